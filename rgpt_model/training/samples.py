"""Training conversations: task-guided QA turns about one image, tokenized with answer-only labels.

One sequence = system prompt + ``<image>`` + several (question, answer) turns about the same
image (LLaVA-style multi-turn), so the image and system tokens are paid once for several
supervised answers. The first turn is exactly the single-turn prompt used at inference, and
turns are shuffled, so every task is also trained in first position.

Region placeholders are resolved per turn: ``<regionN>`` in a turn refers to the N-th mask of
*that turn's* region list (the placeholder embedding is replaced by the region feature, so the
same token can carry different regions in different turns).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from rgpt_model import prompts
from rgpt_model.data import templates
from rgpt_model.data.attributes import COLOURS, SHAPES, SIZES, allowed_pairs
from rgpt_model.data.expressions import near_miss_expressions
from rgpt_model.data.scene import ReferringExpression, Scene
from rgpt_model.tokenization import IMAGE_TOKEN, find_region_placeholders

IGNORE_INDEX = -100
TASK_NAMES = ("classify", "brief_caption", "detailed_caption", "rec", "short_answer")


@dataclass
class Turn:
    """One question/answer about regions ``regions`` (indices into the sample's mask stack)."""

    question: str
    answer: str
    regions: list[int]
    task: str = "free"


@dataclass
class Conversation:
    """An image, its masks (R, H, W) bool, and QA turns referring to rows of ``masks``."""

    image: np.ndarray
    masks: np.ndarray
    turns: list[Turn] = field(default_factory=list)
    attributes: np.ndarray | None = None  # (R, 5): shape, colour, size, cx, cy (synthetic)
    # the objects' exact masks when ``masks`` is a box or coarse variant (repaints and dense
    # targets use these; training/scene_mix.py), and which kind ``masks`` is
    object_masks: np.ndarray | None = None
    mask_kind: str = "exact"


# ------------------------------------------------------------------------ prompt wordings
def classify_question(variant: str) -> str:
    if variant == "data":
        return templates.classify_prompt(1, "shape names")
    if variant == "coco":
        return prompts.classification_prompt(1)
    return prompts.classification_prompt(1, SHAPES)


def brief_question(variant: str) -> str:
    if variant == "data":
        return templates.brief_caption_prompt(1)
    return prompts.brief_caption_prompt(1)


def rec_question(variant: str, expression: str, n: int) -> str:
    if variant == "data":
        return templates.refer_prompt(n, expression)
    return prompts.rec_prompt(expression, n)


def rec_answer(index: int | None) -> str:
    """"Region [k]" (1-based) or the no-match sentence."""
    return prompts.NO_MATCH_ANSWER if index is None else f"Region [{index}]"


def short_question(attr: str) -> str:
    return templates.short_answer_prompt(f"What {attr} is the object at <region1>?")


# ------------------------------------------------------------------------ synthetic turns
def scene_turns(
    scene: Scene,
    rng: np.random.Generator,
    task_weights: dict[str, float],
    max_turns: int,
    variants: Sequence[str] = ("model", "data", "coco"),
    negative_fraction: float = 0.2,
    rec_kind_weights: dict[str, float] | None = None,
    near_miss_fraction: float = 0.0,
    negative_kind_weights: dict[str, float] | None = None,
) -> list[Turn]:
    """Random task-guided turns about a synthetic scene (regions = positions in scene.regions).

    ``rec_kind_weights`` draws a positive expression's kind first (among the scene's kinds,
    by weight), then a phrase of that kind; None draws uniformly over all phrases.
    ``near_miss_fraction`` of the negative REC turns ask for a phrase one attribute away from
    a present object (``near_miss_expressions``) instead of one of the scene's negatives,
    which ``negative_kind_weights`` draw by kind as ``rec_kind_weights`` the positives.
    """
    regions = scene.regions
    n = len(regions)
    tasks = [t for t in TASK_NAMES if task_weights.get(t, 0) > 0]
    weights = np.asarray([task_weights[t] for t in tasks], dtype=float)
    weights /= weights.sum()
    pos = [e for e in scene.expressions if e.target_ids]
    neg = [e for e in scene.expressions if not e.target_ids]
    cls_variants = list(variants)
    other_variants = [v for v in variants if v != "coco"] or ["model"]
    turns: list[Turn] = []
    for _ in range(max_turns):
        task = tasks[int(rng.choice(len(tasks), p=weights))]
        k = int(rng.integers(n))
        r = regions[k]
        if task == "classify":
            v = cls_variants[int(rng.integers(len(cls_variants)))]
            turns.append(Turn(classify_question(v), r.shape, [k], task))
        elif task == "brief_caption":
            v = other_variants[int(rng.integers(len(other_variants)))]
            turns.append(Turn(brief_question(v), r.brief_caption, [k], task))
        elif task == "detailed_caption":
            turns.append(Turn(prompts.detailed_caption_prompt(1), r.detail_caption, [k], task))
        elif task == "short_answer":
            attr = ("colour", "size")[int(rng.integers(2))]
            turns.append(Turn(short_question(attr), getattr(r, attr), [k], task))
        elif task == "rec":
            use_neg = neg and (not pos or rng.random() < negative_fraction)
            pool = neg if use_neg else pos
            if use_neg and near_miss_fraction > 0 and rng.random() < near_miss_fraction:
                pool = near_miss_expressions(regions, allowed_pairs(scene.split)) or neg
            elif use_neg and negative_kind_weights is not None:
                pool = _pool_of_drawn_kind(neg, negative_kind_weights, rng) or neg
            if not use_neg and rec_kind_weights is not None:
                pool = _pool_of_drawn_kind(pos, rec_kind_weights, rng)
            if not pool:
                continue
            e = pool[int(rng.integers(len(pool)))]
            order = [int(i) for i in rng.permutation(n)]
            ids = [regions[i].id for i in order]
            idx = ids.index(e.target_ids[0]) + 1 if e.target_ids else None
            v = other_variants[int(rng.integers(len(other_variants)))]
            turns.append(Turn(rec_question(v, e.text, n), rec_answer(idx), order, task))
    return turns


def _pool_of_drawn_kind(expressions: list[ReferringExpression], weights: dict[str, float],
                        rng: np.random.Generator) -> list[ReferringExpression]:
    """The expressions of one kind, drawn by ``weights`` among the kinds present."""
    kinds = sorted({e.kind for e in expressions if weights.get(e.kind, 0) > 0})
    if not kinds:
        return []
    p = np.asarray([weights[k] for k in kinds], dtype=float)
    kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
    return [e for e in expressions if e.kind == kind]


def scene_conversation(scene: Scene, rng: np.random.Generator, task_weights: dict[str, float],
                       max_turns: int, variants: Sequence[str] = ("model", "data", "coco"),
                       negative_fraction: float = 0.2,
                       rec_kind_weights: dict[str, float] | None = None,
                       near_miss_fraction: float = 0.0,
                       negative_kind_weights: dict[str, float] | None = None) -> Conversation:
    """A multi-turn training conversation about a synthetic scene."""
    masks = np.stack([scene.labels == r.id for r in scene.regions])
    turns = scene_turns(scene, rng, task_weights, max_turns, variants, negative_fraction,
                        rec_kind_weights, near_miss_fraction, negative_kind_weights)
    h, w = scene.labels.shape
    attrs = np.asarray([[SHAPES.index(r.shape), list(COLOURS).index(r.colour),
                         list(SIZES).index(r.size), r.centroid[0] / w, r.centroid[1] / h]
                        for r in scene.regions], dtype=np.float32)
    return Conversation(scene.image, masks, turns, attrs)


def vocabulary_texts() -> list[str]:
    """Texts covering every prompt wording and answer word of the synthetic tasks."""
    texts = [classify_question(v) for v in ("model", "data", "coco")]
    texts += [brief_question(v) for v in ("model", "data")]
    texts += [rec_question(v, "x", 8) for v in ("model", "data")]
    texts += [prompts.detailed_caption_prompt(1), short_question("colour"), short_question("size")]
    texts += [prompts.NO_MATCH_ANSWER, "Region [1]", " ".join(SHAPES), " ".join(COLOURS),
              " ".join(SIZES)]
    return texts


# ------------------------------------------------------------------------------ encoding
@dataclass
class EncodedSample:
    """Token ids, labels (answer tokens only) and mask row per region placeholder.

    ``rec_positions``: (expression's closing quote, token before the answer's number, target
    placeholder) of each REC turn with one answer region, for aux losses that read the REC
    answer (the research plugin's attention supervision and readouts).
    """

    input_ids: list[int]
    labels: list[int]
    region_rows: list[int]
    rec_positions: list[tuple[int, int, int]] = field(default_factory=list)


def encode_conversation(
    conv: Conversation,
    tokenizer,
    image_token_id: int,
    num_global_tokens: int,
    region_token_ids: set[int],
    with_system_prompt: bool = True,
    max_length: int | None = None,
) -> EncodedSample:
    """Vicuna-v1 text of the turns as ids; loss on each answer and its ``</s>``.

    Pieces are tokenized separately (prompt part, answer part), which for word-level and
    SentencePiece tokenizers matches tokenizing the whole string at these boundaries.
    """
    ids: list[int] = []
    labels: list[int] = []
    rows: list[int] = []
    rec_positions: list[tuple[int, int, int]] = []
    bos = tokenizer.bos_token_id
    # only where the tokenizer itself starts a text with it, as the processor's prompts do at
    # inference (Llama and word tokenizers do; SmolLM2's BOS is a chat-template token)
    if bos is not None and tokenizer("", add_special_tokens=True)["input_ids"][:1] == [bos]:
        ids.append(bos)
        labels.append(IGNORE_INDEX)
    eos = tokenizer.eos_token_id

    def expanded(text: str) -> list[int]:
        toks = tokenizer(text, add_special_tokens=False)["input_ids"]
        return [i for t in toks for i in ([t] * num_global_tokens if t == image_token_id
                                          else [t])]

    def add(text: str, supervised: bool) -> None:
        for t in expanded(text):
            ids.append(t)
            labels.append(t if supervised and t != image_token_id else IGNORE_INDEX)

    system = prompts.SYSTEM_PROMPT + prompts.SEP if with_system_prompt else ""
    for i, turn in enumerate(conv.turns):
        user = turn.question
        if i == 0 and IMAGE_TOKEN not in user:
            user = f"{IMAGE_TOKEN}\n{user}"
        prefix = (system if i == 0 else "") + f"{prompts.ROLES[0]}: {user}{prompts.SEP}" \
            f"{prompts.ROLES[1]}:"
        start = len(ids)
        add(prefix, False)
        places = find_region_placeholders(turn.question)
        n_tok = sum(1 for t in ids[start:] if t in region_token_ids)
        if n_tok != len(places):
            raise ValueError(f"turn {turn.question!r}: {n_tok} region tokens for "
                             f"{len(places)} placeholders")
        k = 0
        for p in places:
            local = k if p is None else p - 1
            k += p is None
            rows.append(turn.regions[local])
        answer_start = len(ids)
        add(" " + turn.answer, True)
        if turn.task == "rec":
            rec_positions += _rec_positions(prefix, turn.answer, places, ids, start,
                                            answer_start, expanded, region_token_ids)
        ids.append(eos)
        labels.append(eos)
        if max_length is not None and len(ids) > max_length:
            raise ValueError(f"conversation longer than max_length={max_length}")
    return EncodedSample(ids, labels, rows, rec_positions)


def _rec_positions(prefix: str, answer: str, places: list[int | None], ids: list[int],
                   turn_start: int, answer_start: int, expanded: Callable[[str], list[int]],
                   region_token_ids: set[int]
                   ) -> list[tuple[int, int, int]]:
    """(closing quote, token before the number, k-th placeholder) of a "Region [k]" turn;
    none for no-match or unparsable turns."""
    found = re.fullmatch(r"Region \[(\d+)\]", answer.strip())
    if found is None or int(found.group(1)) not in places or "'" not in prefix:
        return []
    head = expanded(prefix[: prefix.rindex("'") + 1])  # up to the expression's closing quote
    answer_head = expanded(" " + answer[: answer.index("[") + 1])
    if (ids[turn_start:turn_start + len(head)] != head
            or ids[answer_start:answer_start + len(answer_head)] != answer_head):
        return []  # the tokenizer merges across these boundaries: no clean positions
    quote, query = turn_start + len(head) - 1, answer_start + len(answer_head) - 1
    region_positions = [i for i in range(turn_start, answer_start) if ids[i] in region_token_ids]
    target = region_positions[places.index(int(found.group(1)))]
    return [(quote, query, target)]


def collate(
    samples: Sequence[EncodedSample],
    pixel_values: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    pad_token_id: int,
) -> dict[str, torch.Tensor]:
    """Right-padded batch; masks of all samples stacked with their image index.

    pixel_values[b]: (3, S, S); masks[b]: (R_b, S, S) float. ``region_feature_index`` maps the
    placeholders (row-major over the batch) to rows of the stacked masks.
    """
    length = max(len(s.input_ids) for s in samples)
    bsz = len(samples)
    input_ids = torch.full((bsz, length), pad_token_id, dtype=torch.long)
    labels = torch.full((bsz, length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((bsz, length), dtype=torch.long)
    feat_index: list[int] = []
    offset = 0
    image_index: list[int] = []
    rec_positions: list[tuple[int, int, int, int]] = []
    for b, s in enumerate(samples):
        rec_positions.extend((b, *p) for p in s.rec_positions)
        n = len(s.input_ids)
        input_ids[b, :n] = torch.tensor(s.input_ids)
        labels[b, :n] = torch.tensor(s.labels)
        attention[b, :n] = 1
        feat_index.extend(offset + r for r in s.region_rows)
        offset += masks[b].shape[0]
        image_index.extend([b] * masks[b].shape[0])
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": attention,
        "pixel_values": torch.stack(list(pixel_values)),
        "masks": torch.cat(list(masks)),
        "region_image_index": torch.tensor(image_index, dtype=torch.long),
        "region_feature_index": torch.tensor(feat_index, dtype=torch.long),
        "sample_image_index": torch.arange(bsz, dtype=torch.long),
        "rec_positions": torch.tensor(rec_positions, dtype=torch.long).reshape(-1, 4),
    }
