"""Run configs: YAML loading, overrides, validation, and the committed demo config."""

from pathlib import Path

import pytest

from rgpt_model.training.config import load_config, save_config

DEMO = Path(__file__).resolve().parents[3] / "rgpt_model" / "configs" / "demo.yaml"


def test_demo_config_loads():
    cfg = load_config(DEMO)
    assert cfg.model.source == "scratch"
    assert cfg.model.freeze_vision_tower is False
    assert cfg.total_steps > 0
    assert set(cfg.data.task_weights) >= {"classify", "rec", "brief_caption"}


def test_overrides_and_roundtrip(tmp_path):
    cfg = load_config(DEMO, ["stages.0.steps=7", "model.text.hidden_size=32", "seed=3"])
    assert cfg.stages[0].steps == 7 and cfg.model.text.hidden_size == 32 and cfg.seed == 3
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again.to_dict() == cfg.to_dict()


def test_unknown_key_is_an_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  sourc: scratch\n")
    with pytest.raises(ValueError, match="sourc"):
        load_config(p)
    p.write_text("stages:\n  - {name: a, steps: 1, lm_mode: half}\n")
    with pytest.raises(ValueError, match="lm_mode"):
        load_config(p)
