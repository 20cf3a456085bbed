"""Does ``label_score`` say when a label is wrong? AUROC and expected calibration error.

Issue 20 measured 45-67 % of wrong labels with label_score >= 0.9: a score that high on wrong
answers is useless to a robot that must decide whether to trust a label. AUROC measures how well
the score ranks right labels above wrong ones (1.0 perfect, 0.5 no better than a constant);
ECE how far the score is from the share of right labels at that score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import mannwhitneyu

from rgpt_model.evaluation.intervals import CONFIDENCE, bootstrap_interval, proportion

CONFIDENT = 0.9  # "confident" score, the threshold issue 20 counted wrong labels above


def auroc(scores: Sequence[float], correct: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` separating right (True) from wrong labels:
    the chance that a random right label outscores a random wrong one (ties count half).
    None when either class is missing."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(correct, dtype=bool)
    pos, neg = s[y], s[~y]
    if not pos.size or not neg.size:
        return None
    return float(mannwhitneyu(pos, neg, method="asymptotic").statistic / (pos.size * neg.size))


def auroc_interval(scores: Sequence[float], correct: Sequence[bool], resamples: int = 1000,
                   seed: int = 0) -> list[float] | None:
    """Bootstrap interval of the AUROC, resampling right and wrong labels apart (stratified,
    so every resample has both classes)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(correct, dtype=bool)
    pos, neg = s[y], s[~y]
    if not pos.size or not neg.size:
        return None
    rng = np.random.default_rng(seed)
    p = pos[rng.integers(0, pos.size, size=(resamples, pos.size))]
    n = neg[rng.integers(0, neg.size, size=(resamples, neg.size))]
    values = mannwhitneyu(p, n, axis=1, method="asymptotic").statistic / (pos.size * neg.size)
    alpha = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return [float(low), float(high)]


def expected_calibration_error(scores: Sequence[float], correct: Sequence[bool],
                               bins: int = 10) -> float | None:
    """ECE over ``bins`` equal-width score bins: sum over bins of (share of items in the bin)
    x |share right - mean score|. 0 for a perfectly calibrated score."""
    s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(correct, dtype=np.float64)
    if not s.size:
        return None
    which = np.minimum((s * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, y, bins) - np.bincount(which, s, bins))
    return float(gap.sum() / count.sum())


def label_score_report(scores: Sequence[float], correct: Sequence[bool], seed: int = 0) -> dict:
    """AUROC and ECE of label scores, each with a bootstrap 95 % interval, and the share of
    wrong labels scored >= ``CONFIDENT`` (Wilson interval)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(correct, dtype=bool)
    wrong = s[~y]
    return {
        "auroc": {"value": auroc(s, y), "ci95": auroc_interval(s, y, seed=seed),
                  "num": int(s.size)},
        "ece": {"value": expected_calibration_error(s, y),
                "ci95": bootstrap_interval(
                    lambda idx: expected_calibration_error(s[idx], y[idx]), int(s.size),
                    seed=seed),
                "num": int(s.size)},
        "num_wrong": int(wrong.size),
        "wrong_confident_share": proportion(wrong >= CONFIDENT),
        "mean_score_right": float(s[y].mean()) if y.any() else None,
        "mean_score_wrong": float(wrong.mean()) if wrong.size else None,
    }
