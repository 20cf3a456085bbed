"""The targets section: point and interval checks, both directions, missing figures fail."""

from __future__ import annotations

from rgpt_model.evaluation.targets import REC_KINDS, check_targets, issue20_targets


def _fig(value, lo, hi):
    return {"value": value, "ci95": [lo, hi], "num": 200}


def _report(exact=0.97, grey=0.12, changed=0.0):
    cls = {"classification": {"accuracy": _fig(exact, exact - 0.02, min(exact + 0.02, 1.0))}}
    return {
        "classification": {"accuracy": exact},
        "rec": {"accuracy": 0.93},
        "brief_caption": {"colour_and_shape_accuracy": 0.95},
        "mask_shuffle": {"accuracy": 0.2, "same_shape_rate": 0.2, "chance": 0.125},
        "id_permutation": {"changed": _fig(changed, 0.0, changed + 0.01)},
        "label_score": {"auroc": _fig(0.9, 0.86, 0.94)},
        "conditions": {
            "exact": {**cls,
                      "brief_caption": {"colour_and_shape": _fig(0.95, 0.93, 0.97),
                                        "size": _fig(0.91, 0.88, 0.94)},
                      "rec": {"accuracy": _fig(0.93, 0.91, 0.95),
                              "by_kind": {k: _fig(0.9, 0.84, 0.94) for k in REC_KINDS}}},
            "flat_grey": {"classification": {"accuracy": _fig(grey, grey - 0.03, grey + 0.03)}},
        },
    }


def test_targets_checked_both_ways_with_intervals():
    t = issue20_targets(_report())
    assert t["classification_exact"]["met"] and t["classification_exact"]["target"] == ">= 0.95"
    assert t["classification_exact"]["met_with_confidence"]  # 0.95 .. 0.99
    assert t["classification_flat_grey"]["met"] and t["classification_flat_grey"]["ci95"]
    assert t["rec_superlative"]["met"] and not t["rec_superlative"]["met_with_confidence"]
    assert t["id_permutation_changed"]["met"] and t["label_score_auroc"]["met"]


def test_failing_and_missing_figures_are_not_met():
    t = issue20_targets(_report(exact=0.9, grey=0.9, changed=0.04))
    assert not t["classification_exact"]["met"]
    assert not t["classification_flat_grey"]["met"]  # reads the outline: control fails
    assert not t["id_permutation_changed"]["met"]
    assert t["classification_box"] == {
        "value": None, "ci95": None, "target": ">= 0.92", "met": False,
        "met_with_confidence": False, "note": "not measured"}


def test_check_targets_keeps_the_old_names_and_needs_every_target():
    t = check_targets(_report())
    assert {"classification_accuracy", "rec_accuracy", "brief_colour_and_shape_accuracy",
            "mask_shuffle_near_chance"} <= set(t)
    assert not t["all_met"]  # box, coarse, frames and robustness were not measured
    old_only = _report()
    del old_only["conditions"]
    t = check_targets(old_only)
    assert t["all_met"] and "classification_box" not in t
