"""The demo model reads the image; the previous one (demo_model_v1) read the mask's outline.

Both models label the same test scenes under two controls of the evaluation: bounding-box
masks (an outline that says nothing about the shape) and exact masks on a flat grey image
(an outline with no pixels under it). A model whose label comes from the image passes the
first and fails the second; the previous demo model does the opposite, which is what makes
these controls able to fail. Full-split figures: eval_report.json of each model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rgpt_model.demo import DEMO_MODEL_V1_DIR
from rgpt_model.evaluation.condition_run import run_condition
from rgpt_model.evaluation.conditions import CONDITIONS


def _label_accuracy(predictor, condition_name: str) -> float:
    """Labels right on 8 test scenes (about 30 regions) under the evaluation's condition."""
    labels_only = dataclasses.replace(CONDITIONS[condition_name], rec=False)
    records = run_condition(predictor, labels_only, start=300, num_scenes=8, progress=False)
    return float(np.mean([r.correct for r in records.regions]))


@pytest.fixture(scope="module")
def v1_predictor():
    from rgpt_model.build import load_predictor

    return load_predictor(DEMO_MODEL_V1_DIR, device="cpu")


def test_demo_model_labels_come_from_the_image(demo_predictor):
    assert _label_accuracy(demo_predictor, "box") >= 0.7  # 200 scenes: 88.7 %
    assert _label_accuracy(demo_predictor, "flat_grey") <= 0.4  # chance 12.5 %; 12.8 %


def test_the_previous_model_labels_from_the_outline(v1_predictor):
    """The controls catch the shortcut: on the previous model they show the reverse."""
    assert _label_accuracy(v1_predictor, "box") <= 0.35  # 13.2 %: every box is "square"
    assert _label_accuracy(v1_predictor, "flat_grey") >= 0.8  # 97.6 %
