"""Many frames as one: one vision batch for all frames, one decoding batch for all their regions.

Why: one node serving several cameras pays a model step per batch, not per row, and a
decoder step costs about the same for one row as for a few dozen (a GPU step is bound by
reading the weights). ``describe`` on one frame is this path with a single frame, so the two
can never disagree.

- :func:`encode_many`: the processor resizes every frame to the model input, so the pixel
  tensors stack; masks of all frames are pooled in the same call, each from its own image
  (``region_image_index``). The ONNX encoder takes one image per call: there, frames are
  encoded one after another.
- :func:`describe_many`: every (frame, task, region) prompt is one row of one decoding batch;
  the shared-prefix decoder computes each frame's system + image prefix once (all frames in one
  prefill) and each row gathers its frame's prefix cache. Regions a label map already names
  are not classified (``named``), as :func:`rgpt_model.regions.describe_regions` does. With
  ``reuse`` (an :class:`~rgpt_model.answer_reuse.AnswerReuse` per frame), regions that have not
  changed get their last answer back and are not decoded at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from . import prompts
from .answer_reuse import AnswerReuse
from .encoded_frame import EncodedFrame
from .errors import InvalidQueryError
from .masks import mask_area, mask_bbox, to_mask_stack, validate_image
from .results import RegionDescription

logger = logging.getLogger(__name__)

DESCRIBE_TASKS = ("classify", "caption", "detailed_caption")
ShouldStop = Callable[[], bool] | None


@dataclass(frozen=True)
class DescribeOptions:
    """Validated describe settings; ``key`` is what a reused answer must have been made with."""

    tasks: tuple[str, ...]  # in DESCRIBE_TASKS order
    vocabulary: tuple[str, ...]
    max_new_tokens: int

    @property
    def key(self) -> tuple:
        return (self.tasks, self.vocabulary, self.max_new_tokens)

    def question(self, task: str) -> str:
        """The task-guided instruction for one region (``<region1>``)."""
        if task == "classify":
            return prompts.classification_prompt(1, self.vocabulary)
        if task == "caption":
            return prompts.brief_caption_prompt(1)
        return prompts.detailed_caption_prompt(1)


def describe_options(predictor, tasks: Sequence[str] | str, vocabulary: Sequence[str] | None,
                     max_new_tokens: int) -> DescribeOptions:
    """Check the describe arguments before any work (InvalidQueryError says what is wrong)."""
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in DESCRIBE_TASKS]
    if bad or not tasks:
        raise InvalidQueryError(f"unknown task(s) {bad or tasks}; choose from {DESCRIBE_TASKS}")
    if vocabulary is not None and len(vocabulary) == 0:
        raise InvalidQueryError(
            "vocabulary is empty; pass None for the model's default labels or some labels"
        )
    return DescribeOptions(
        tasks=tuple(t for t in DESCRIBE_TASKS if t in tasks),
        vocabulary=tuple(vocabulary) if vocabulary is not None else predictor.default_vocabulary,
        max_new_tokens=predictor.limits.check_max_new_tokens(max_new_tokens),
    )


# ------------------------------------------------------------------------------ encoding
@torch.no_grad()
def encode_many(predictor, items: Sequence[tuple]) -> list[EncodedFrame]:
    """Encode ``(image, masks, region_ids)`` frames with one region-encoder call (see module
    docstring); arguments as for ``RGPTPredictor.encode``, results in ``items`` order.
    Also ``RGPTPredictor.encode_many``."""
    predictor.restore()
    processor = predictor.processor
    pixels, mask_ts, stacks, ids, sizes = [], [], [], [], []
    for item in items:
        if len(item) != 3:
            raise TypeError("encode_many takes (image, masks, region_ids) tuples; "
                            f"got one of length {len(item)}")
        image, masks, region_ids = item
        img = validate_image(image)
        stack, frame_ids = to_mask_stack(masks, img.shape[:2], region_ids)
        pixel_values, tf = processor.preprocess_image(img)
        pixels.append(pixel_values)
        mask_ts.append(processor.preprocess_masks(stack, tf))
        stacks.append(stack)
        ids.append(frame_ids)
        sizes.append((int(img.shape[0]), int(img.shape[1])))
    if not pixels:
        return []
    counts = [m.shape[0] for m in mask_ts]
    device = predictor.device
    if len(pixels) == 1 or not isinstance(predictor.region_encoder, torch.nn.Module):
        # one image per call (a single frame, or the ONNX encoder)
        outs = [predictor.region_encoder(p.to(device), m.to(device))
                for p, m in zip(pixels, mask_ts, strict=True)]
        g = torch.cat([o[0] for o in outs])
        r = torch.cat([o[1] for o in outs])
    else:
        index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
        g, r = predictor.region_encoder(torch.cat(pixels).to(device),
                                        torch.cat(mask_ts).to(device), index.to(device))
    global_embeds = predictor.model.project(g)
    region_embeds = predictor.model.project(r)
    frames, start = [], 0
    for k, n in enumerate(counts):
        frames.append(EncodedFrame(
            global_embeds=global_embeds[k : k + 1],
            region_embeds=region_embeds[start : start + n],
            region_features=r[start : start + n],
            region_ids=ids[k],
            masks=stacks[k],
            frame_size=sizes[k],
        ))
        start += n
    return frames


# ------------------------------------------------------------------------------ decoding
@dataclass(frozen=True)
class _Row:
    """One prompt of the decoding batch: a task about one region of one frame."""

    frame: int
    region: int  # position in the frame's region_ids
    task: str


def _rows(frames: Sequence[EncodedFrame], options: DescribeOptions,
          named: Sequence[Mapping[int, str]]) -> list[_Row]:
    """Frame-major, then task, then region (a single frame gives describe's historic order)."""
    return [_Row(f, i, task)
            for f, frame in enumerate(frames) for task in options.tasks
            for i, rid in enumerate(frame.region_ids)
            if not (task == "classify" and rid in named[f])]


@torch.no_grad()
def _decode_rows(predictor, frames: Sequence[EncodedFrame], rows: list[_Row],
                 options: DescribeOptions, should_stop: ShouldStop) -> list[tuple[str, float]]:
    """(answer, mean token probability) of every row, all rows in one decoding batch."""
    offsets, total = [], 0
    for frame in frames:
        offsets.append(total)
        total += len(frame.region_ids)
    texts = [prompts.generation_prompt(options.question(r.task)) for r in rows]
    enc = predictor.processor.tokenize(texts, [[offsets[r.frame] + r.region] for r in rows])
    device = predictor.device
    used = sorted({r.frame for r in rows})  # frames with at least one row
    slot = {f: k for k, f in enumerate(used)}
    ids = enc["input_ids"].to(device)
    embeds = predictor.model.merge_embeddings(
        ids,
        torch.cat([frames[f].global_embeds for f in used]),
        torch.cat([frame.region_embeds for frame in frames]),
        enc["region_feature_index"].to(device),
        torch.tensor([slot[r.frame] for r in rows], device=device),
    )
    tokens, probs = predictor.generate_from_embeds(
        embeds, enc["attention_mask"].to(device), options.max_new_tokens, should_stop,
        row_groups=[r.frame for r in rows],
    )
    return [(prompts.clean_answer(predictor.processor.decode(t)), p)
            for t, p in zip(tokens, probs, strict=True)]


def _descriptions(frame: EncodedFrame, frame_rows: list[tuple[_Row, tuple[str, float]]],
                  options: DescribeOptions, named: Mapping[int, str]) -> list[RegionDescription]:
    """One frame's RegionDescriptions (frame order) from its rows' answers."""
    n = len(frame.region_ids)
    labels = [named.get(rid, "") for rid in frame.region_ids]
    scores = [1.0 if rid in named else 0.0 for rid in frame.region_ids]
    captions = [""] * n
    for row, (text, p) in frame_rows:
        i = row.region
        if row.task == "classify":
            match = prompts.parse_classification_answer(text, options.vocabulary)
            labels[i], scores[i] = match.label, float(match.score * p)
        else:
            captions[i] = text if not captions[i] else f"{captions[i]} {text}"
    return [RegionDescription(region_id=rid, label=labels[i], label_score=scores[i],
                              caption=captions[i], bbox=mask_bbox(frame.masks[i]),
                              area=mask_area(frame.masks[i]))
            for i, rid in enumerate(frame.region_ids)]


def _per_frame(values, n: int, what: str, default) -> list:
    if values is None:
        return [default] * n
    values = list(values)
    if len(values) != n:
        raise InvalidQueryError(f"{what} has {len(values)} entries for {n} frames; give one "
                                "per frame (None for none)")
    return values


def describe_many(
    predictor,
    frames: Sequence[EncodedFrame],
    *,
    tasks: Sequence[str] | str,
    vocabulary: Sequence[str] | None = None,
    max_new_tokens: int = 32,
    should_stop: ShouldStop = None,
    named: Sequence[Mapping[int, str] | None] | None = None,
    reuse: Sequence[AnswerReuse | None] | None = None,
) -> list[list[RegionDescription]]:
    """Describe every region of every frame in one decoding batch (module docstring).

    ``named``: per frame, id -> label of regions already named (kept with score 1.0, not
    classified; their captions still run). ``reuse``: per frame (one stream each), the
    stream's AnswerReuse or None; unchanged regions come back with ``reused=True``.
    Results per frame, in each frame's region order; equal to ``describe`` frame by frame.
    Also ``RGPTPredictor.describe_many``.
    """
    options = describe_options(predictor, tasks, vocabulary, max_new_tokens)
    predictor.restore()
    frames = list(frames)
    named_maps = [{int(i): str(v) for i, v in (m or {}).items()}
                  for m in _per_frame(named, len(frames), "named", None)]
    reusers = _per_frame(reuse, len(frames), "reuse", None)
    streams = [id(r) for r in reusers if r is not None]
    if len(streams) != len(set(streams)):
        raise InvalidQueryError("one AnswerReuse serves one stream: give each frame of a batch "
                                "its own stream's object (its next frame goes in the next call)")
    plans = [r.plan(f, key=options.key, named=m) if r is not None else None
             for f, r, m in zip(frames, reusers, named_maps, strict=True)]
    work = [f if plan is None or len(plan.decode_ids) == len(f) else f.select(plan.decode_ids)
            for f, plan in zip(frames, plans, strict=True)]
    rows = _rows(work, options, named_maps)
    answers = _decode_rows(predictor, work, rows, options, should_stop) if rows else []
    by_frame: list[list] = [[] for _ in work]
    for row, answer in zip(rows, answers, strict=True):
        by_frame[row.frame].append((row, answer))
    out = []
    for k, frame in enumerate(work):
        descs = _descriptions(frame, by_frame[k], options, named_maps[k])
        if plans[k] is not None:
            descs = plans[k].merge(frames[k].region_ids, descs)
            reusers[k].update(frames[k], descs, key=options.key, named=named_maps[k])
        out.append(descs)
    logger.debug("described %d frame(s): %d rows decoded", len(frames), len(rows))
    return out
