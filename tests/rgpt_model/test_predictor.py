"""End-to-end predictor API on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rgpt_model.errors import (
    EmptyMaskError,
    InvalidImageError,
    InvalidMaskError,
    InvalidQueryError,
    UnknownRegionError,
)
from rgpt_model.predictor import ReferResult, RegionDescription
from rgpt_model.prompts import COCO80


def test_describe_label_image(predictor, scene):
    img, lab = scene
    out = predictor.describe(img, lab, max_new_tokens=4)
    assert [d.region_id for d in out] == [3, 5, 7]
    assert all(isinstance(d, RegionDescription) for d in out)
    assert all(d.label in COCO80 and 0.0 <= d.label_score <= 1.0 for d in out)
    assert out[0].bbox == (0, 0, 10, 10) and out[0].area == 100
    assert out[1].bbox == (30, 20, 30, 20)


def test_describe_deterministic_and_batch_independent(predictor, scene):
    img, lab = scene
    a = predictor.describe(img, lab, max_new_tokens=4)
    b = predictor.describe(img, lab, max_new_tokens=4)
    assert a == b
    single = predictor.describe(img, lab, region_ids=[5], max_new_tokens=4)
    assert single[0].label == a[1].label and single[0].caption == a[1].caption


def test_describe_pil_and_stack_and_vocab(predictor, scene):
    img, lab = scene
    stack = np.stack([lab == 3, lab == 5])
    out = predictor.describe(
        Image.fromarray(img),
        stack,
        tasks=("classify",),
        vocabulary=["mug", "laptop"],
        max_new_tokens=3,
    )
    assert [d.region_id for d in out] == [1, 2]
    assert all(d.label in ("mug", "laptop") and d.caption == "" for d in out)
    assert predictor.describe(img, np.zeros_like(lab)) == []


def test_refer_and_ask(predictor, scene):
    img, lab = scene
    res = predictor.refer(img, lab, "the red mug", max_new_tokens=6)
    assert isinstance(res, ReferResult)
    assert set(res.matched_ids) <= {3, 5, 7} and len(res.scores) == len(res.matched_ids)
    assert isinstance(predictor.ask(img, lab, "what is <region2>?", max_new_tokens=4), str)
    assert isinstance(predictor.ask(img, lab, "what is there?", max_new_tokens=4), str)


def test_refer_many_candidates(predictor):
    img = np.full((64, 64, 3), 120, np.uint8)
    lab = np.zeros((64, 64), np.uint16)
    for i in range(40):
        r, c = divmod(i, 8)
        lab[r * 12 : r * 12 + 6, c * 8 : c * 8 + 5] = i + 1
    res = predictor.refer(img, lab, "the left one", max_new_tokens=5)
    assert set(res.matched_ids) <= set(range(1, 41))


def test_bad_inputs(predictor, scene):
    img, lab = scene
    with pytest.raises(InvalidImageError, match="uint8"):
        predictor.describe(img.astype(np.float32), lab)
    with pytest.raises(InvalidImageError, match="HxWx3"):
        predictor.describe(img[..., :2], lab)
    with pytest.raises(InvalidMaskError, match="differs from image size"):
        predictor.describe(img, lab[:20])
    with pytest.raises(EmptyMaskError):
        predictor.describe(img, np.zeros((2, 40, 60), bool))
    with pytest.raises(UnknownRegionError, match="not present"):
        predictor.describe(img, lab, region_ids=[4])
    with pytest.raises(InvalidQueryError):
        predictor.refer(img, lab, "  ")
    with pytest.raises(InvalidQueryError):
        predictor.describe(img, lab, tasks=("dance",))


def test_default_vocabulary_is_the_models_label_set(tmp_path, scene):
    """A model trained on its own label set answers with it when the caller gives none."""
    from rgpt_model.predictor import RGPTPredictor
    from rgpt_model.tiny import make_tiny_model

    labels = ["circle", "square", "star"]
    path = make_tiny_model(tmp_path / "m", seed=1, vocabulary=labels, label_vocabulary=labels)
    predictor = RGPTPredictor.from_pretrained(path)
    assert predictor.default_vocabulary == tuple(labels)
    img, lab = scene
    assert {d.label for d in predictor.describe(img, lab, tasks=("classify",))} <= set(labels)
    reloaded = RGPTPredictor.from_pretrained(path)
    assert reloaded.config.label_vocabulary == labels
