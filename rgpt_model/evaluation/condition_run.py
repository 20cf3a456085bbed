"""Ask a predictor about every scene of one condition and keep each answer with its truth.

The records are summarised elsewhere (:mod:`rgpt_model.evaluation.condition_report`), so one
pass over the scenes serves every figure of a condition. Everything goes through the
predictor API the node uses (``encode`` once per frame, then ``describe`` and ``refer`` on the
encoded frame), with mask stacks: box and coarse masks may overlap, which a label image cannot
hold.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from rgpt_model.data.attributes import HELD_OUT_PAIRS, SHAPES
from rgpt_model.data.expressions import spatial_word
from rgpt_model.data.scene import ReferringExpression
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.evaluation import metrics
from rgpt_model.evaluation.conditions import (
    Condition,
    condition_masks,
    derangement,
    flat_grey_image,
    scene_config,
)


@dataclass
class RegionRecord:
    """One region's truth and the model's label and brief caption for it."""

    shape: str
    colour: str
    size: str
    held_out: bool
    mask_kind: str
    label: str
    label_score: float
    caption: str
    reference: str  # the generator's brief caption

    @property
    def correct(self) -> bool:
        return metrics.normalize_answer(self.label) == self.shape

    def caption_has(self, attribute: str) -> bool:
        return getattr(self, attribute) in metrics.normalize_answer(self.caption).split()


@dataclass
class RecRecord:
    """One referring expression: its category, the target ids and the answers.

    ``permuted`` is the answer with the same masks renumbered and reordered, mapped back to
    the scene's ids (None when not asked)."""

    text: str
    kind: str
    category: str
    word: str | None
    target: list[int]
    predicted: list[int]
    permuted: list[int] | None = None


@dataclass
class ConditionRecords:
    """Everything asked under one condition."""

    condition: Condition
    scene_config: SceneConfig
    missing_knobs: list[str]
    num_scenes: int = 0
    regions: list[RegionRecord] = field(default_factory=list)
    rec: list[RecRecord] = field(default_factory=list)
    legacy_rec: list[RecRecord] = field(default_factory=list)  # the issue-4 report's sample
    score_rows: list[np.ndarray] = field(default_factory=list)  # (R, C) class scores per scene
    shuffle: list[tuple[str, str, str]] = field(default_factory=list)  # label, own, mask's
    detail: list[tuple[str, str]] = field(default_factory=list)  # caption, reference
    seconds: float = 0.0


def rec_category(e: ReferringExpression) -> str:
    """Kind plus subkind: "relation_unique_subject", "absent_near_miss", "attribute"..."""
    sub = getattr(e, "subkind", "") or ""
    return f"{e.kind}_{sub}" if sub else e.kind


def sample_expressions(expressions: Sequence[ReferringExpression], rng: np.random.Generator,
                       per_category: int) -> list[ReferringExpression]:
    """Up to ``per_category`` expressions of each category of the scene, drawn at random, so
    rare kinds (unique-subject relations, near misses) are measured as well as common ones."""
    groups: dict[str, list[ReferringExpression]] = {}
    for e in expressions:
        groups.setdefault(rec_category(e), []).append(e)
    out = []
    for cat in sorted(groups):
        pool = groups[cat]
        idx = rng.choice(len(pool), size=min(per_category, len(pool)), replace=False)
        out += [pool[int(j)] for j in sorted(idx)]
    return out


def legacy_expressions(seed: int, index: int, split: str, cfg: SceneConfig,
                       rng: np.random.Generator, positives: int, negatives: int
                       ) -> list[ReferringExpression]:
    """The issue-4 report's REC sample, kept so its "rec.accuracy" stays comparable: up to
    ``positives`` and ``negatives`` expressions drawn from the scene's expressions as the
    generator makes them without the evaluation's extra kinds (same image and regions)."""
    plain = dataclasses.replace(cfg, unique_subject_relations=False, max_near_misses=0)
    exprs = generate_scene(seed, index, split, plain).expressions
    chosen = []
    for pool, k in (([e for e in exprs if e.target_ids], positives),
                    ([e for e in exprs if not e.target_ids], negatives)):
        if pool and k > 0:
            idx = rng.choice(len(pool), size=min(k, len(pool)), replace=False)
            chosen += [pool[int(j)] for j in sorted(idx)]
    return chosen


def run_condition(predictor, condition: Condition, *, split: str = "test", seed: int = 0,
                  start: int = 0, num_scenes: int = 200, base_config: SceneConfig | None = None,
                  rec_per_kind: int = 2, class_scores=None, shuffle: bool = False,
                  detailed: bool = False, permute_ids: bool = False,
                  legacy_rec: tuple[int, int] | None = None,
                  progress: bool = True) -> ConditionRecords:
    """Scenes ``start .. start+num_scenes-1`` of ``split`` under ``condition``.

    Each scene's image and masks are encoded once (``predictor.encode``) and every question
    about them reuses that frame. ``class_scores(frame, vocab) -> (R, C)`` adds class scores
    for mAP; ``shuffle`` asks labels with masks swapped between regions; ``detailed`` asks
    detailed captions; ``permute_ids`` asks every expression again with the regions renumbered
    (check g); ``legacy_rec=(positives, negatives)`` also asks the issue-4 report's REC sample,
    drawn first so it is the sample the issue-4 report drew.
    """
    cfg, missing = scene_config(condition, base_config)
    out = ConditionRecords(condition, cfg, missing)
    vocab = list(SHAPES)
    held = set(HELD_OUT_PAIRS)
    t0 = time.time()
    for i in tqdm(range(start, start + num_scenes), desc=f"eval {split} {condition.name}",
                  disable=not progress, unit="scene"):
        scene = generate_scene(seed, i, split, cfg)
        ids = [r.id for r in scene.regions]
        exact = np.stack([scene.labels == rid for rid in ids])
        rng = np.random.default_rng([seed, i, 99])
        masks, mask_kind = condition_masks(exact, condition, rng, i)
        image = flat_grey_image(scene.image) if condition.flat_grey else scene.image
        frame = predictor.encode(image, masks)  # stack position k (id k + 1) is scene ids[k]
        # labels and brief captions apart, as the issue-4 report asked them (4 and 40 tokens)
        labels = predictor.describe(frame, tasks=("classify",), vocabulary=vocab,
                                    max_new_tokens=4)
        captions = predictor.describe(frame, tasks=("caption",), max_new_tokens=40)
        for r, d, c in zip(scene.regions, labels, captions, strict=True):
            out.regions.append(RegionRecord(r.shape, r.colour, r.size, (r.colour, r.shape) in held,
                                            mask_kind, d.label, float(d.label_score), c.caption,
                                            r.brief_caption))
        if class_scores is not None:
            out.score_rows.append(class_scores(frame, vocab))
        if shuffle and len(ids) >= 2:
            perm = derangement(len(ids), rng)
            swapped = predictor.describe(predictor.encode(image, masks[perm]),
                                         tasks=("classify",), vocabulary=vocab, max_new_tokens=4)
            out.shuffle += [(d.label, scene.regions[k].shape, scene.regions[perm[k]].shape)
                            for k, d in enumerate(swapped)]
        if detailed:
            for r, d in zip(scene.regions, predictor.describe(
                    frame, tasks=("detailed_caption",), max_new_tokens=40), strict=True):
                out.detail.append((d.caption, r.detail_caption))
        if legacy_rec is not None:
            for e in legacy_expressions(seed, i, split, cfg, rng, *legacy_rec):
                out.legacy_rec.append(_refer(predictor, frame, ids, e, rng))
        if condition.rec:
            renumbered = None
            if permute_ids and len(ids) >= 2:
                perm = derangement(len(ids), rng)  # new position j holds old position perm[j]
                renumbered = (predictor.encode(image, masks[perm]), perm)
            for e in sample_expressions(scene.expressions, rng, rec_per_kind):
                out.rec.append(_refer(predictor, frame, ids, e, rng, renumbered))
        out.num_scenes += 1
    out.seconds = time.time() - t0
    return out


def _refer(predictor, frame, ids: list[int], e: ReferringExpression, rng: np.random.Generator,
           renumbered: tuple | None = None) -> RecRecord:
    """Ask ``e`` about the encoded ``frame`` with all regions as candidates in a random order
    (frame id k holds scene id ``ids[k - 1]``); with ``renumbered`` = (frame of the masks in
    the order ``perm``, ``perm``) ask again there, in another random order."""
    n = len(ids)
    order = [int(j) + 1 for j in rng.permutation(n)]
    got = predictor.refer(frame, e.text, region_ids=order).matched_ids
    rec = RecRecord(e.text, e.kind, rec_category(e), spatial_word(e), sorted(e.target_ids),
                    sorted(ids[k - 1] for k in got))
    if renumbered is not None:
        other, perm = renumbered
        order2 = [int(j) + 1 for j in rng.permutation(n)]
        got2 = predictor.refer(other, e.text, region_ids=order2).matched_ids
        rec.permuted = sorted(ids[perm[k - 1]] for k in got2)
    return rec
