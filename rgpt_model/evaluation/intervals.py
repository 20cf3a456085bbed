"""95 % intervals for the evaluation's figures: Wilson for proportions, bootstrap otherwise.

A figure in the report is a small dict ``{"value", "ci95": [low, high], "num"}`` so every
number a target is checked against carries the uncertainty of its sample size (issue 20:
at least 200 scenes per condition, and the interval says what that buys).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import binomtest

CONFIDENCE = 0.95


def wilson_interval(hits: int, num: int) -> list[float] | None:
    """Wilson score interval of ``hits`` out of ``num`` (None for an empty sample)."""
    if num <= 0:
        return None
    ci = binomtest(int(hits), int(num)).proportion_ci(CONFIDENCE, method="wilson")
    return [float(ci.low), float(ci.high)]


def proportion(flags: Sequence[bool]) -> dict:
    """Share of true flags with its Wilson interval: ``{"value", "ci95", "num"}``."""
    flags = np.asarray(flags, dtype=bool)
    num = int(flags.size)
    hits = int(flags.sum())
    return {"value": hits / num if num else None, "ci95": wilson_interval(hits, num),
            "num": num}


def bootstrap_interval(statistic: Callable[[np.ndarray], float], num: int,
                       resamples: int = 1000, seed: int = 0) -> list[float] | None:
    """Percentile bootstrap interval of ``statistic(indices)`` over ``num`` items resampled
    with replacement; resamples whose statistic is NaN are dropped."""
    if num <= 0:
        return None
    rng = np.random.default_rng(seed)
    values = np.asarray([statistic(rng.integers(0, num, size=num)) for _ in range(resamples)],
                        dtype=np.float64)
    values = values[~np.isnan(values)]
    if not values.size:
        return None
    alpha = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return [float(low), float(high)]
