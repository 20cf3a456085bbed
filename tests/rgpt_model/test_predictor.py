"""End-to-end predictor API on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rgpt_model.data.synthetic import generate_scene
from rgpt_model.errors import (
    EmptyMaskError,
    InvalidImageError,
    InvalidMaskError,
    InvalidQueryError,
    QueryCancelledError,
    UnknownRegionError,
)
from rgpt_model.predictor import ReferResult, RegionDescription, RGPTPredictor
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


def test_refer_and_ask(demo_predictor):
    """The demo model picks the region an expression names and answers about the region a
    question names (held-out test scenes)."""
    scene = generate_scene(0, 503, "test")
    frame = demo_predictor.encode(scene.image, scene.labels)
    for expression in scene.expressions[:8]:
        res = demo_predictor.refer(frame, expression.text)
        assert res.matched_ids == expression.target_ids, expression.text
        assert len(res.scores) == 1 and 0.0 < res.scores[0] <= 1.0
    # region 2 is the medium orange hexagon; the demo model was not trained on colour
    # questions and answers with the region's brief caption
    answer = demo_predictor.ask(frame, "What colour is <region2>?")
    assert "orange" in answer and "hexagon" in answer
    # the image + masks call encodes and answers the same
    same = demo_predictor.refer(scene.image, scene.labels, scene.expressions[3].text)
    assert same == demo_predictor.refer(frame, scene.expressions[3].text)


def test_refer_many_candidates(demo_predictor, monkeypatch):
    """More candidates than one prompt holds (6 regions, prompts of 2): the chunked rounds
    still end on the named region."""
    scene = generate_scene(0, 501, "test")
    frame = demo_predictor.encode(scene.image, scene.labels)
    monkeypatch.setattr(demo_predictor.model.config, "max_regions_per_prompt", 2)
    rounds: list[int] = []
    run = demo_predictor._run

    def counted_run(fr, questions, *args, **kwargs):
        rounds.append(len(questions))
        return run(fr, questions, *args, **kwargs)

    monkeypatch.setattr(demo_predictor, "_run", counted_run)
    for expression in scene.expressions[:8]:
        rounds.clear()
        res = demo_predictor.refer(frame, expression.text)
        assert res.matched_ids == expression.target_ids, expression.text
        # three chunks of two first; winners compete again until one prompt holds them all
        assert rounds[0] == 3 and rounds[-1] == 1 and len(rounds) >= 2, rounds


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
    from rgpt_model.tiny import make_tiny_model

    labels = ["circle", "square", "star"]
    path = make_tiny_model(tmp_path / "m", seed=1, vocabulary=labels, label_vocabulary=labels)
    predictor = RGPTPredictor.from_pretrained(path)
    assert predictor.default_vocabulary == tuple(labels)
    img, lab = scene
    assert {d.label for d in predictor.describe(img, lab, tasks=("classify",))} <= set(labels)
    reloaded = RGPTPredictor.from_pretrained(path)
    assert reloaded.config.label_vocabulary == labels


def test_one_encoder_call_serves_three_queries(predictor, scene):
    """set_image/predict: a frame is encoded once; describe, refer and ask reuse it."""
    img, lab = scene
    calls = []
    handle = predictor.model.region_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        frame = predictor.encode(img, lab)
        descs = predictor.describe(frame, max_new_tokens=3)
        res = predictor.refer(frame, "the red mug", max_new_tokens=4)
        answer = predictor.ask(frame, "what is <region2>?", max_new_tokens=3)
        assert len(calls) == 1
        # the image + masks forms encode once per call and answer the same
        assert predictor.describe(img, lab, max_new_tokens=3) == descs
        assert predictor.refer(img, lab, "the red mug", max_new_tokens=4) == res
        assert predictor.ask(img, lab, "what is <region2>?", max_new_tokens=3) == answer
        assert len(calls) == 4
    finally:
        handle.remove()


def test_encoded_frame_contents_and_selection(predictor, scene):
    img, lab = scene
    frame = predictor.encode(img, lab)
    hidden = predictor.config.vision_config.hidden_size
    assert frame.region_ids == [3, 5, 7] and frame.frame_size == (40, 60)
    assert frame.masks.shape == (3, 40, 60) and frame.masks.dtype == bool
    assert bool(frame.masks[1].any()) and not frame.masks[1][lab != 5].any()
    assert frame.region_features.shape == (3, hidden)
    assert torch.equal(predictor.model.project(frame.region_features), frame.region_embeds)
    sub = frame.select([7, 3])
    assert sub.region_ids == [7, 3]
    assert torch.equal(sub.region_features, frame.region_features[[2, 0]])
    with pytest.raises(UnknownRegionError, match="not in this encoded frame"):
        frame.select([4])
    # region_ids on a frame select without re-encoding; answers equal an encode of the subset
    (sel,) = predictor.describe(frame, region_ids=[5], max_new_tokens=3)
    (enc,) = predictor.describe(img, lab, region_ids=[5], max_new_tokens=3)
    assert (sel.region_id, sel.label, sel.caption) == (5, enc.label, enc.caption)
    assert sel.label_score == pytest.approx(enc.label_score, abs=1e-5)
    with pytest.raises(TypeError, match=r"refer\(frame, expression\)"):
        predictor.refer(frame, lab, "the mug")
    with pytest.raises(TypeError, match=r"ask\(image, masks, question\)"):
        predictor.ask(img, "what is it?")
    with pytest.raises(TypeError, match="masks are missing"):
        predictor.describe(img)


def test_over_long_queries_are_refused_before_any_work(predictor, scene):
    img, lab = scene
    calls = []
    handle = predictor.model.region_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        huge = "the red mug " * 90_000  # about 1 MB
        with pytest.raises(InvalidQueryError, match="max_query_chars"):
            predictor.refer(img, lab, huge)
        with pytest.raises(InvalidQueryError, match="max_query_chars"):
            predictor.ask(img, lab, huge)
        with pytest.raises(InvalidQueryError, match="max_new_tokens_limit"):
            predictor.describe(img, lab, max_new_tokens=513)
        with pytest.raises(InvalidQueryError, match="between 1 and 512"):
            predictor.refer(img, lab, "the mug", max_new_tokens=0)
        assert calls == []  # refused before the image was encoded
    finally:
        handle.remove()
    strict = RGPTPredictor(predictor.model, predictor.processor, max_query_tokens=4,
                           max_new_tokens_limit=8)
    frame = strict.encode(img, lab)
    with pytest.raises(InvalidQueryError, match="6 tokens, over the limit of 4"):
        strict.refer(frame, "the red mug on the left")
    assert isinstance(strict.refer(frame, "the red mug", max_new_tokens=8), ReferResult)


def test_should_stop_cancels_a_task(predictor, scene):
    img, lab = scene
    frame = predictor.encode(img, lab)
    with pytest.raises(QueryCancelledError):
        predictor.describe(frame, max_new_tokens=8, should_stop=lambda: True)
    polls = []
    assert predictor.ask(frame, "what is there?", max_new_tokens=4,
                         should_stop=lambda: polls.append(1) and False) is not None
    assert len(polls) >= 4  # polled between the decoding steps


def test_offload_and_restore_are_no_ops_on_cpu(predictor, scene):
    img, lab = scene
    before = predictor.describe(img, lab, max_new_tokens=3)
    predictor.offload()
    predictor.offload()
    assert not predictor.is_offloaded and predictor.device.type == "cpu"
    predictor.restore()
    assert predictor.describe(img, lab, max_new_tokens=3) == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_offload_frees_the_gpu_and_restore_brings_it_back(tiny_model_dir, scene):
    img, lab = scene
    gpu = RGPTPredictor.from_pretrained(tiny_model_dir, device="cuda")
    before = gpu.describe(img, lab, max_new_tokens=3)
    gpu.offload()
    gpu.offload()
    assert gpu.is_offloaded and next(gpu.model.parameters()).device.type == "cpu"
    gpu.restore()
    gpu.restore()
    assert next(gpu.model.parameters()).device.type == "cuda"
    assert gpu.describe(img, lab, max_new_tokens=3) == before
    gpu.offload()
    assert gpu.describe(img, lab, max_new_tokens=3) == before  # used while offloaded: restored
