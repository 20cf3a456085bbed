"""Metrics against hand-made cases."""

import math
import shutil

import numpy as np
import pytest

from rgpt_model.data.templates import parse_refer_answer, refer_answer
from rgpt_model.evaluation import metrics
from rgpt_model.evaluation.metrics import (
    average_precision,
    caption_metrics,
    classification_accuracy,
    mean_average_precision,
    rec_accuracy,
)


def test_classification_accuracy():
    assert classification_accuracy(
        ["Circle.", "star", "cross"], ["circle", "square", "cross"]
    ) == pytest.approx(2 / 3)
    assert classification_accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        classification_accuracy(["a"], [])


def test_average_precision_hand_case():
    # Ranked: positive, negative, positive -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # Envelope: 1 for recall <= 0.5 (51 of 101 points), 2/3 above (50 points).
    ap = average_precision([0.9, 0.8, 0.7], [True, False, True])
    assert ap == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)
    assert average_precision([0.1, 0.9], [True, False]) == pytest.approx(
        0.5 * 0 + (51 * 0.5 + 50 * 0.5) / 101
    )
    assert average_precision([0.3, 0.2], [True, True]) == pytest.approx(1.0)
    assert math.isnan(average_precision([0.3], [False]))


def test_mean_average_precision():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.1, 0.7, 0.2]])
    labels = [0, 1, 1, 0]
    out = mean_average_precision(scores, labels, ["a", "b", "c"])
    # class a: ranked 0(+), 2(-), 1(-), 3(+): p=1, .5, 1/3, .5 -> env 1 | .5
    ap_a = (51 * 1.0 + 50 * 0.5) / 101
    # class b: ranked 1(+), 3(-), 2(+), 0(-): p=1, .5, 2/3 -> env 1 | 2/3
    ap_b = (51 * 1.0 + 50 * 2 / 3) / 101
    assert out["per_class"] == pytest.approx({"a": ap_a, "b": ap_b})
    assert out["num_classes"] == 2  # class c has no regions
    assert out["mAP"] == pytest.approx((ap_a + ap_b) / 2)
    perfect = mean_average_precision(np.eye(3), [0, 1, 2])
    assert perfect["mAP"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mean_average_precision(np.eye(3), [0, 1, 3])


def test_rec_accuracy_counts_none_separately():
    pred = [[3], [1, 2], [], [], [2], [4]]
    tgt = [[3], [2, 1], [], [5], [], [1]]
    out = rec_accuracy(pred, tgt)
    assert out["accuracy"] == pytest.approx(3 / 6)
    assert out["positive_accuracy"] == pytest.approx(2 / 4)
    assert out["none_accuracy"] == pytest.approx(1 / 2)
    assert (out["num_positive"], out["num_none"]) == (4, 2)
    assert (out["false_none"], out["false_match"]) == (1, 1)
    only_pos = rec_accuracy([[1]], [[1]])
    assert only_pos["none_accuracy"] is None and only_pos["accuracy"] == 1.0


def test_parse_refer_answer_round_trip():
    assert parse_refer_answer(refer_answer([2])) == [2]
    assert parse_refer_answer(refer_answer([])) == []
    assert parse_refer_answer("Region [3], Region [1]") == [3, 1]
    assert parse_refer_answer("Region [7]", num_candidates=5) == []


def test_cider_perfect_beats_wrong_and_notes_without_java(monkeypatch):
    refs = [["a small red circle"], ["a large blue square"], ["a medium green star"]]
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    good = caption_metrics(
        ["A small red circle.", "a large blue square", "a medium green star"], refs
    )
    bad = caption_metrics(["a heart", "the cross", "yellow"], refs)
    assert good["CIDEr"] > 5.0 and bad["CIDEr"] == pytest.approx(0.0)
    assert good["METEOR"] is None and "java" in good["notes"][0]
    assert caption_metrics(["x"], [["y"]], meteor=False)["notes"] == ["METEOR not requested"]
    with pytest.raises(ValueError):
        caption_metrics(["x"], [[]])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None,
                    reason="METEOR needs java, a system package (scripts/setup.sh says so)")
def test_meteor_with_java(request):
    # The Java scorer takes ~10-25 s to start; run only when slow tests are asked for.
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow: run with -m slow")
    refs = [["a small red circle"], ["a large blue square"], ["a medium green star"]]
    good = caption_metrics(["a small red circle", "a large blue square", "a green star"], refs)
    assert 0.5 < good["METEOR"] <= 1.0 and good["notes"] == []
