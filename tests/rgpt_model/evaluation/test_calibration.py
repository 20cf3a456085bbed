"""AUROC, calibration error and 95 % intervals on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from rgpt_model.evaluation.calibration import (
    auroc,
    auroc_interval,
    expected_calibration_error,
    label_score_report,
)
from rgpt_model.evaluation.intervals import bootstrap_interval, proportion, wilson_interval


def test_auroc_hand_cases():
    right = [True] * 5 + [False] * 5
    assert auroc([0.9, 0.8, 0.95, 0.7, 0.99, 0.1, 0.2, 0.3, 0.05, 0.4], right) == 1.0
    assert auroc([0.5] * 10, right) == 0.5  # a constant score separates nothing
    assert auroc([0.1, 0.2, 0.3, 0.4, 0.5, 0.9, 0.8, 0.7, 0.6, 0.95], right) == 0.0
    # right {0.9, 0.7} vs wrong {0.8, 0.6}: 3 of 4 pairs ordered right
    assert auroc([0.9, 0.8, 0.7, 0.6], [True, False, True, False]) == pytest.approx(0.75)
    assert auroc([0.9, 0.8], [True, True]) is None


def test_auroc_interval_holds_the_value_and_narrows_with_data():
    rng = np.random.default_rng(0)

    def sample(n):
        y = rng.random(n) < 0.7
        s = np.clip(0.5 + 0.2 * np.where(y, 1, -1) + rng.normal(0, 0.2, n), 0, 1)
        return s, y

    s, y = sample(100)
    lo, hi = auroc_interval(s, y)
    assert 0.0 <= lo <= auroc(s, y) <= hi <= 1.0
    s2, y2 = sample(2000)
    lo2, hi2 = auroc_interval(s2, y2)
    assert hi2 - lo2 < hi - lo
    assert auroc_interval([0.9], [True]) is None


def test_ece_zero_when_calibrated_and_large_when_overconfident():
    scores = [0.25] * 100 + [0.75] * 100
    right = [True] * 25 + [False] * 75 + [True] * 75 + [False] * 25
    assert expected_calibration_error(scores, right) == pytest.approx(0.0)
    assert expected_calibration_error([1.0] * 10, [True] * 5 + [False] * 5) == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    s = rng.random(20000)
    assert expected_calibration_error(s, rng.random(20000) < s) < 0.02
    assert expected_calibration_error([], []) is None


def test_label_score_report_counts_confident_wrong_labels():
    rep = label_score_report([0.95, 0.92, 0.5, 0.99, 0.3], [True, False, False, True, False])
    assert rep["num_wrong"] == 3
    assert rep["wrong_confident_share"]["value"] == pytest.approx(1 / 3)
    assert rep["auroc"]["value"] == pytest.approx(1.0)
    assert rep["ece"]["ci95"][0] <= rep["ece"]["value"] <= rep["ece"]["ci95"][1]


def test_wilson_interval():
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    lo, hi = wilson_interval(96, 100)
    assert lo == pytest.approx(0.9016, abs=1e-3) and hi == pytest.approx(0.9843, abs=1e-3)
    assert wilson_interval(0, 0) is None
    fig = proportion([True, True, False, True])
    assert fig["value"] == 0.75 and fig["num"] == 4 and fig["ci95"][0] < 0.75 < fig["ci95"][1]
    assert proportion([]) == {"value": None, "ci95": None, "num": 0}


def test_bootstrap_interval_of_a_mean():
    x = np.random.default_rng(2).normal(3.0, 1.0, 400)
    lo, hi = bootstrap_interval(lambda idx: float(x[idx].mean()), len(x))
    assert lo < x.mean() < hi and hi - lo == pytest.approx(2 * 1.96 / 20, rel=0.25)
