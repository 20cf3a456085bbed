"""The construction registry: every source builds through rgpt_model.build; load_predictor is the
one call the node and the CLI need."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from rgpt_model import demo
from rgpt_model.build import MODEL_BUILDERS, build_predictor, build_tiny, load_predictor
from rgpt_model.errors import ModelLoadError
from rgpt_model.predictor import RGPTPredictor
from rgpt_model.tiny import make_tiny_model


def test_registry_names_every_source():
    assert set(MODEL_BUILDERS) == {"pretrained", "llava", "components", "scratch", "tiny"}
    with pytest.raises(ModelLoadError, match="unknown model source 'sam'"):
        build_predictor("sam", "x")


def test_tiny_model_is_built_through_the_registry(tmp_path):
    model, processor = build_tiny(seed=3, vocabulary=["gizmo"])
    saved = RGPTPredictor.from_pretrained(make_tiny_model(tmp_path / "m", seed=3,
                                                          vocabulary=["gizmo"]))
    for (ka, a), (kb, b) in zip(model.state_dict().items(), saved.model.state_dict().items(),
                                strict=True):
        assert ka == kb and torch.equal(a, b), ka
    assert processor.tokenizer.get_vocab() == saved.processor.tokenizer.get_vocab()
    other, _ = build_tiny(seed=4)
    assert not torch.equal(other.connector.linear_1.weight, model.connector.linear_1.weight)
    tiny = build_predictor("tiny", device="cpu", dtype="bfloat16", seed=3)
    assert tiny.model.dtype == torch.bfloat16 and tiny.device == torch.device("cpu")


def test_load_predictor_defaults_to_the_demo_model():
    demo_config = json.loads((demo.DEMO_MODEL_DIR / "config.json").read_text())
    for empty in (None, "", "  "):
        predictor = load_predictor(empty, device="cpu")
        assert predictor.config.label_vocabulary == demo_config["label_vocabulary"]
        assert predictor.config.text_config.hidden_size == demo_config["text_config"]["hidden_size"]
        assert predictor.backend == "torch" and predictor.device.type == "cpu"
    auto = load_predictor()  # device "auto": the GPU when there is one, else the CPU
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_load_predictor_refuses_what_is_not_a_model_directory(tmp_path, tiny_model_dir):
    with pytest.raises(ModelLoadError, match="not a directory; set model_path"):
        load_predictor(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="not a directory; set model_path"):
        load_predictor(tiny_model_dir / "config.json")
    with pytest.raises(ModelLoadError, match="unknown device"):
        load_predictor(tiny_model_dir, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            load_predictor(tiny_model_dir, device="cuda:0")
    onnx = load_predictor(tiny_model_dir, device="cpu", backend="onnx",
                          onnx_path=tmp_path / "enc.onnx")
    assert onnx.backend == "onnx" and (tmp_path / "enc.onnx").is_file()


def test_load_predictor_warns_when_only_the_tiny_random_model_exists(tmp_path, monkeypatch,
                                                                     caplog):
    monkeypatch.setattr(demo, "DEMO_MODEL_DIR", tmp_path / "no_demo_model")
    monkeypatch.setenv("RGPT_CACHE_DIR", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="rgpt_model"):
        predictor = load_predictor(device="cpu")
    assert any(r.levelno == logging.WARNING and "RANDOM" in r.getMessage()
               for r in caplog.records)
    assert predictor.config.text_config.hidden_size == 64  # the tiny model
