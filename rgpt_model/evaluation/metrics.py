"""Metrics of the paper's region tasks: classification accuracy and mAP, REC accuracy,
region-caption CIDEr and METEOR.

Numpy only (pycocoevalcap for captions); METEOR needs ``java`` on PATH and is skipped with a
note otherwise. Inputs are plain lists so the evaluation command and tests can call these
without a model.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

_PUNCT_RE = re.compile(r"[^\w\s]")


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, collapse whitespace ("Circle." -> "circle")."""
    return " ".join(_PUNCT_RE.sub(" ", text.lower()).split())


def classification_accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of regions whose predicted name equals the reference after normalisation."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions vs {len(references)} references")
    if not references:
        return 0.0
    hits = sum(
        normalize_answer(p) == normalize_answer(r)
        for p, r in zip(predictions, references, strict=True)
    )
    return hits / len(references)


def average_precision(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """COCO-style AP: precision envelope sampled at 101 recall points; NaN without positives.

    Ties in ``scores`` keep input order (stable sort), so results are reproducible.
    """
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positives, dtype=bool)
    n_pos = int(pos.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(pos[order])
    fp = np.cumsum(~pos[order])
    recall = tp / n_pos
    precision = tp / np.maximum(tp + fp, 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    thresholds = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(recall, thresholds, side="left")
    sampled = np.where(idx < len(recall), envelope[np.minimum(idx, len(recall) - 1)], 0.0)
    return float(sampled.mean())


def mean_average_precision(
    scores: np.ndarray, labels: Sequence[int], class_names: Sequence[str] | None = None
) -> dict:
    """mAP over classes from per-region class scores ``(R, C)`` and true class indices ``(R,)``.

    For each class the regions are ranked by that class's score; regions of the class are the
    positives (region classification with ground-truth boxes, as in COCO-style evaluation).
    Classes without any region are left out of the mean.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if s.ndim != 2 or len(y) != s.shape[0]:
        raise ValueError(f"scores must be (R, C) and labels (R,), got {s.shape} and {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError("labels must index the score columns")
    names = list(class_names) if class_names is not None else [str(c) for c in range(s.shape[1])]
    if len(names) != s.shape[1]:
        raise ValueError(f"{len(names)} class names for {s.shape[1]} score columns")
    per_class = {}
    for c, name in enumerate(names):
        ap = average_precision(s[:, c], y == c)
        if not np.isnan(ap):
            per_class[name] = ap
    m = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return {"mAP": m, "per_class": per_class, "num_classes": len(per_class)}


def rec_accuracy(predicted: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> dict:
    """REC accuracy: a prediction is right when its region-id set equals the target set.

    Empty sets mean "No corresponding options found."; those cases are also reported apart
    (``none_accuracy``) next to ``positive_accuracy`` for queries that do name a region.
    """
    if len(predicted) != len(targets):
        raise ValueError(f"{len(predicted)} predictions vs {len(targets)} targets")
    right = [set(p) == set(t) for p, t in zip(predicted, targets, strict=True)]
    is_none = [not t for t in targets]
    n_none = sum(is_none)
    n_pos = len(targets) - n_none

    def share(hits: int, n: int) -> float | None:
        return hits / n if n else None

    return {
        "accuracy": share(sum(right), len(targets)) or 0.0,
        "positive_accuracy": share(
            sum(r for r, z in zip(right, is_none, strict=True) if not z), n_pos
        ),
        "none_accuracy": share(sum(r for r, z in zip(right, is_none, strict=True) if z), n_none),
        "num": len(targets),
        "num_positive": n_pos,
        "num_none": n_none,
        "false_none": sum(1 for p, t in zip(predicted, targets, strict=True) if t and not p),
        "false_match": sum(1 for p, t in zip(predicted, targets, strict=True) if p and not t),
    }


def _tokenize(text: str) -> str:
    # Stand-in for the Java PTB tokenizer: lowercase words, punctuation dropped.
    return normalize_answer(text)


def caption_metrics(
    predictions: Sequence[str], references: Sequence[Sequence[str]], meteor: bool = True
) -> dict:
    """CIDEr (CIDEr-D, pycocoevalcap scale: 1.0 = "100") and METEOR of region captions.

    METEOR runs pycocoevalcap's Java scorer; without ``java`` on PATH (or when it fails) the
    value is None and ``notes`` says why.
    """
    from pycocoevalcap.cider.cider import Cider

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions vs {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every prediction needs at least one reference caption")
    res = {i: [_tokenize(p)] for i, p in enumerate(predictions)}
    gts = {i: [_tokenize(r) for r in refs] for i, refs in enumerate(references)}
    out: dict = {"num": len(predictions), "CIDEr": 0.0, "METEOR": None, "notes": []}
    if not predictions:
        out["notes"].append("no captions to score")
        return out
    cider, _ = Cider().compute_score(gts, res)
    out["CIDEr"] = float(cider)
    if not meteor:
        out["notes"].append("METEOR not requested")
    elif shutil.which("java") is None:
        out["notes"].append("METEOR skipped: java not found on PATH")
    else:
        try:
            from pycocoevalcap.meteor.meteor import Meteor

            scorer = Meteor()
            try:
                score, _ = scorer.compute_score(gts, res)
            finally:
                del scorer
            out["METEOR"] = float(score)
        except Exception as exc:  # the Java scorer is an external process
            log.warning("METEOR failed: %s", exc)
            out["notes"].append(f"METEOR failed: {exc}")
    return out
