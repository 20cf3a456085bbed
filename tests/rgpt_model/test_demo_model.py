"""The committed demo model: default model, size, and its targets on a small test sample.

Full-split numbers, under every issue-20 condition, are in rgpt_model/demo_model/
eval_report.json (scripts/train_demo.sh). A missing or broken demo model is a failure here,
never a skip: the product ships it, and a skip would hide a regression (issue 18, defect 15).
"""

import json

import pytest
import torch

from rgpt_model.demo import DEMO_MODEL_DIR, default_model_path
from rgpt_model.evaluation.conditions import CONDITION_NAMES


def test_demo_model_is_committed_and_loads():
    """Every file the model needs is there and loads as is (no tiny random fallback)."""
    from rgpt_model.predictor import RGPTPredictor

    missing = [name for name in ("config.json", "model.safetensors", "tokenizer.json",
                                 "eval_report.json") if not (DEMO_MODEL_DIR / name).is_file()]
    assert not missing, f"demo model files missing in {DEMO_MODEL_DIR}: {missing}"
    predictor = RGPTPredictor.from_pretrained(DEMO_MODEL_DIR)
    assert sum(p.numel() for p in predictor.model.parameters()) > 1_000_000


def _report() -> dict:
    return json.loads((DEMO_MODEL_DIR / "eval_report.json").read_text())


def test_default_model_is_the_demo_model_and_small():
    assert default_model_path() == DEMO_MODEL_DIR
    size = sum(p.stat().st_size for p in DEMO_MODEL_DIR.rglob("*") if p.is_file())
    assert size <= 25 * 1024 * 1024, size
    report = _report()
    assert report["split"] == "test" and report["num_scenes"] >= 200
    assert set(CONDITION_NAMES) <= set(report["conditions"]), sorted(report["conditions"])
    # the control the previous demo model failed (97.6 %): labels on a flat grey image
    assert report["targets"]["classification_flat_grey"]["met_with_confidence"]


@pytest.fixture(scope="module")
def sample_report():
    from rgpt_model.evaluation.evaluate import evaluate_synthetic

    torch.set_num_threads(1)
    return evaluate_synthetic(DEMO_MODEL_DIR, "test", num_scenes=12, start=500, detailed=False,
                              meteor=False, progress=False)


def test_demo_model_labels_follow_the_masks(sample_report):
    """What the committed model does learn: shape labels well above chance (1/8), and near
    chance once the masks are shuffled between regions."""
    assert sample_report["classification"]["accuracy"] >= 0.25, sample_report["classification"]
    assert sample_report["mask_shuffle"]["accuracy"] <= 0.3, sample_report["mask_shuffle"]


def test_committed_report_describes_the_committed_model(sample_report):
    """The report next to the weights must be this model's: a fresh sample agrees with it."""
    committed = _report()
    for section, key in (("classification", "accuracy"), ("rec", "accuracy"),
                         ("brief_caption", "colour_accuracy")):
        if key in committed.get(section, {}):
            fresh, stored = sample_report[section][key], committed[section][key]
            assert abs(fresh - stored) <= 0.25, (section, key, fresh, stored)


def test_demo_model_is_near_its_targets_on_test_sample(sample_report):
    """Floors for 12 scenes (50 regions, 60 REC queries of the issue-4 sample), a few answers
    below what the model does there (measured: labels 96 %, REC 85 %, captions 96 %); the
    full split's figures under every condition are eval_report.json's. The sample is
    deterministic, so the REC floor fails once 4 more of the 60 answers go wrong."""
    rep = sample_report
    assert rep["rec"]["num"] >= 50, rep["rec"]
    assert rep["classification"]["accuracy"] >= 0.9, rep["classification"]
    assert rep["rec"]["accuracy"] >= 0.8, rep["rec"]
    assert rep["brief_caption"]["colour_and_shape_accuracy"] >= 0.9, rep["brief_caption"]
    assert rep["targets"]["mask_shuffle_near_chance"]["met"], rep["mask_shuffle"]
