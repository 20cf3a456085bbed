"""Summaries of one condition's records: every figure as ``{"value", "ci95", "num"}``.

Sections: classification (overall, held-out and seen colour-shape pairs, by mask kind, label
score AUROC and calibration), brief captions (colour, shape, size words), REC (overall, with
and without a target, by kind and subkind), and the share of REC answers that change when the
same masks are renumbered (issue 20, check g).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict

from rgpt_model.evaluation.calibration import label_score_report
from rgpt_model.evaluation.condition_run import ConditionRecords, RecRecord, RegionRecord
from rgpt_model.evaluation.conditions import REC_KNOBS
from rgpt_model.evaluation.intervals import proportion


def _by(items: Iterable, key: Callable, flag: Callable) -> dict[str, dict]:
    groups: dict[str, list[bool]] = {}
    for item in items:
        k = key(item)
        if k is not None:
            groups.setdefault(k, []).append(flag(item))
    return {k: proportion(v) for k, v in sorted(groups.items())}


def classification_section(regions: list[RegionRecord], seed: int = 0) -> dict:
    """Label accuracy overall, by held-out pair and mask kind, and the label scores' AUROC."""
    return {
        "accuracy": proportion([r.correct for r in regions]),
        "held_out_pairs": proportion([r.correct for r in regions if r.held_out]),
        "seen_pairs": proportion([r.correct for r in regions if not r.held_out]),
        "by_mask_kind": _by(regions, lambda r: r.mask_kind, lambda r: r.correct),
        "by_shape": _by(regions, lambda r: r.shape, lambda r: r.correct),
        "label_score": label_score_report([r.label_score for r in regions],
                                          [r.correct for r in regions], seed=seed),
    }


def caption_section(regions: list[RegionRecord]) -> dict:
    """Brief captions that name the region's colour, shape and size word."""
    return {
        "colour_and_shape": proportion([r.caption_has("colour") and r.caption_has("shape")
                                        for r in regions]),
        "colour": proportion([r.caption_has("colour") for r in regions]),
        "shape": proportion([r.caption_has("shape") for r in regions]),
        "size": proportion([r.caption_has("size") for r in regions]),
        "size_by_true_size": _by(regions, lambda r: r.size, lambda r: r.caption_has("size")),
    }


def _right(r: RecRecord) -> bool:
    return set(r.predicted) == set(r.target)


def rec_section(records: list[RecRecord]) -> dict:
    """REC accuracy (exact id set, "none" when nothing fits), by category and spatial word."""
    return {
        "accuracy": proportion([_right(r) for r in records]),
        "positive": proportion([_right(r) for r in records if r.target]),
        "none": proportion([_right(r) for r in records if not r.target]),
        "by_kind": _by(records, lambda r: r.category, _right),
        "by_spatial_word": _by(records, lambda r: f"{r.kind}: {r.word}" if r.word else None,
                               _right),
    }


def id_permutation_section(records: list[RecRecord]) -> dict:
    """Share of REC answers that change when the same masks get other ids in another order."""
    asked = [r for r in records if r.permuted is not None]
    return {
        "changed": proportion([set(r.permuted) != set(r.predicted) for r in asked]),
        "accuracy_permuted": proportion([set(r.permuted) == set(r.target) for r in asked]),
        "note": "each expression asked twice: the masks as given in a random order, then "
                "renumbered (every region gets another id) in another random order; answers "
                "compared after mapping back to the scene's ids",
    }


def condition_section(records: ConditionRecords, seed: int = 0) -> dict:
    """The report section of one condition."""
    c = records.condition
    out = {
        "description": c.description,
        "num_scenes": records.num_scenes,
        "num_regions": len(records.regions),
        "scene_config": {k: v for k, v in asdict(records.scene_config).items()
                         if k in c.scene_knobs or k in REC_KNOBS},
        "missing_knobs": records.missing_knobs,
        "image": "flat grey" if c.flat_grey else "rendered",
        "masks": c.masks,
        "classification": classification_section(records.regions, seed),
        "brief_caption": caption_section(records.regions),
        "rec": rec_section(records.rec) if c.rec else None,
        "seconds": round(records.seconds, 1),
    }
    if any(r.permuted is not None for r in records.rec):
        out["id_permutation"] = id_permutation_section(records.rec)
    return out
