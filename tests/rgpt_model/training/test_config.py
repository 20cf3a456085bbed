"""Run configs: YAML loading, overrides, validation, and the committed demo config."""

from pathlib import Path

import pytest

from rgpt_model.training.config import config_from_dict, load_config, save_config

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


def test_unregistered_aux_loss_fails_at_load_naming_the_module_to_import(tmp_path):
    p = tmp_path / "rec.yaml"
    p.write_text("stages:\n  - {name: a, steps: 1, aux_losses: {rec_no_such_loss: 1.0}}\n")
    with pytest.raises(ValueError, match=r"stage a: unregistered aux losses \['rec_no_such_loss'\]"
                                         r".*plugins: \[research\]"):
        load_config(p)
    p.write_text("stages:\n  - {name: a, steps: 1, augmentations: {sepia: 0.5}}\n")
    with pytest.raises(ValueError, match=r"unregistered augmentations \['sepia'\]"):
        load_config(p)
    with pytest.raises(ValueError, match="plugin 'no_such_plugin' could not be imported"):
        load_config(None, ["plugins=[no_such_plugin]"])


def test_old_schema_keys_load_as_aux_losses_and_augmentations(caplog):
    old = {"aux_loss_weight": 0.2, "plugins": ["research"], "stages": [
        {"name": "vision", "lm_loss": False, "grey_fraction": 0.4},
        {"name": "rec", "rec_attention_weight": 1.0, "rec_pointer_layout": "answer",
         "rec_readout_weight": 0.5, "rec_expression_weight": 0.05, "rec_position_weight": 1.0,
         "grey_fraction": 0.0},
        {"name": "quote", "rec_attention_weight": 1.0, "rec_pointer_layout": "quote"}]}
    new = {"aux_losses": {"region_attributes": 0.2}, "plugins": ["research"], "stages": [
        {"name": "vision", "lm_loss": False, "augmentations": {"grey_repaint": 0.4}},
        {"name": "rec", "aux_losses": {"rec_attention_answer": 1.0, "rec_number_readout": 0.5,
                                       "rec_expression_readout": 0.05,
                                       "rec_position_readout": 1.0}},
        {"name": "quote", "aux_losses": {"rec_attention_quote": 1.0}}]}
    with caplog.at_level("WARNING"):
        upgraded = config_from_dict(old)
    assert upgraded.to_dict() == config_from_dict(new).to_dict()
    assert list(upgraded.stages[1].aux_losses) == list(new["stages"][1]["aux_losses"])  # order
    assert "deprecated run config keys" in caplog.text and "grey_fraction" in caplog.text
