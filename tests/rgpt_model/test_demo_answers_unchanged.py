"""The demo models answer exactly as they did when recorded: the previous one (demo_model_v1)
before the architecture change of issue 18, the current one when it became the default.

The references are tests/rgpt_model/golden/demo_answers*.json (demo_answers.py records them);
texts and ids must match exactly, scores within float noise. Fields added to the results
after the recording (``FIELDS_ADDED_SINCE``) must hold their defaults.
"""

import json

import pytest
import torch

from rgpt_model.demo import DEMO_MODEL_DIR
from tests.rgpt_model.golden.demo_answers import GOLDEN_FILES, compute_answers

# RegionDescription fields newer than the recording, with the value a fresh answer has
FIELDS_ADDED_SINCE = {"reused": False, "age": 0}


def _compare(fresh, stored, where: str = "") -> None:
    if isinstance(stored, dict):
        added = set(fresh) - set(stored)
        assert added <= set(FIELDS_ADDED_SINCE) and set(stored) <= set(fresh), where
        assert {k: fresh[k] for k in added} == {k: FIELDS_ADDED_SINCE[k] for k in added}, where
        for key in stored:
            _compare(fresh[key], stored[key], f"{where}.{key}")
    elif isinstance(stored, list):
        assert len(fresh) == len(stored), where
        for i, (a, b) in enumerate(zip(fresh, stored, strict=True)):
            _compare(a, b, f"{where}[{i}]")
    elif isinstance(stored, float):
        assert fresh == pytest.approx(stored, abs=1e-4), where
    else:
        assert fresh == stored, where


@pytest.mark.parametrize("folder", sorted(GOLDEN_FILES))
def test_demo_model_answers_are_unchanged(folder):
    from rgpt_model.predictor import RGPTPredictor

    torch.set_num_threads(1)
    predictor = RGPTPredictor.from_pretrained(DEMO_MODEL_DIR.parent / folder)
    _compare(compute_answers(predictor), json.loads(GOLDEN_FILES[folder].read_text()))
