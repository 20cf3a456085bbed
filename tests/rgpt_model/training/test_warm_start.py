"""Warm start: named parts of a saved model copied into a new one (position table resized),
pinned by the weights' sha256; the saved model may be in the layout before the region encoder
(the demo model's file)."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from rgpt_model.build import load_model
from rgpt_model.errors import ModelLoadError
from rgpt_model.processor import RGPTProcessor
from rgpt_model.tiny import make_tiny_model
from rgpt_model.training.builder import build_model
from rgpt_model.training.config import config_from_dict
from rgpt_model.training.warm_start import (
    file_sha256,
    load_parts,
    resize_position_table,
    weights_path,
)

from .conftest import tiny_run_dict


@pytest.fixture
def saved(tmp_path):
    return make_tiny_model(tmp_path / "old", seed=3, use_mask_position=True)


def _run_dict(tmp_path, saved, parts, image_size):
    d = tiny_run_dict(tmp_path)
    old = load_model(saved).config
    v, t = old.vision_config, old.text_config
    d["model"].update({
        "vision": {"image_size": image_size, "patch_size": v.patch_size,
                   "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
                   "num_hidden_layers": v.num_hidden_layers,
                   "num_attention_heads": v.num_attention_heads},
        "text": {"hidden_size": t.hidden_size, "intermediate_size": t.intermediate_size,
                 "num_hidden_layers": t.num_hidden_layers,
                 "num_attention_heads": t.num_attention_heads,
                 "num_key_value_heads": t.num_key_value_heads},
        "refiner_hidden_size": old.refiner_hidden_size, "patch_merge_factor": 2,
        "mask_position": True, "mask_position_spread": False, "pad_to_square": False,
        "warm_start": {"path": str(saved), "sha256": file_sha256(saved / "model.safetensors"),
                       "parts": parts},
    })
    return d


def _legacy_copy(saved, dst):
    """``saved`` with its weights in the layout before the region encoder (as the demo
    model's file)."""
    dst.mkdir()
    for f in saved.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    weights = load_file(saved / "model.safetensors")
    save_file({k.removeprefix("region_encoder."): v for k, v in weights.items()},
              dst / "model.safetensors", metadata={"format": "pt"})
    return dst


@pytest.mark.parametrize("layout", ["current", "legacy"])
def test_build_model_starts_from_the_named_parts(tmp_path, saved, layout):
    old = load_model(saved)
    source = saved if layout == "current" else _legacy_copy(saved, tmp_path / "legacy")
    image_size = 2 * old.config.image_size  # a larger input: the position table is resized
    cfg = config_from_dict(_run_dict(tmp_path, source, ["refiner", "connector", "lm", "vision"],
                                     image_size))
    model, processor = build_model(cfg)
    new, was = model.state_dict(), old.state_dict()
    enc = "region_encoder."
    for key in was:
        if key.startswith((enc + "refiner.", "connector.", "language_model.",
                           enc + "vision_tower.")) and \
                not key.endswith("position_embedding.weight"):
            assert torch.equal(new[key], was[key]), key
    position = enc + "mask_position.mlp.0.weight"
    assert not torch.equal(new[position], was[position])  # not a part named
    table = new[enc + "vision_tower.embeddings.position_embedding.weight"]
    grid = image_size // old.config.vision_config.patch_size
    assert table.shape[0] == 1 + grid * grid
    assert torch.equal(
        table[0], was[enc + "vision_tower.embeddings.position_embedding.weight"][0])
    old_words = RGPTProcessor.from_pretrained(saved).tokenizer.get_vocab()
    assert processor.tokenizer.get_vocab() == old_words  # the old LM's words
    assert processor.pad_to_square is False
    assert model.mask_position.spread is False


def test_a_changed_weights_file_is_refused(tmp_path, saved):
    with pytest.raises(ModelLoadError, match="sha256"):
        weights_path(saved, "0" * 64)
    with pytest.raises(ModelLoadError, match="does not exist"):
        weights_path(tmp_path / "nowhere", None)


def test_a_part_that_does_not_fit_is_refused(tmp_path, saved):
    d = _run_dict(tmp_path, saved, ["lm"], 64)
    d["model"]["text"]["hidden_size"] *= 2
    d["model"]["warm_start"] = None
    model, _ = build_model(config_from_dict(d))
    with pytest.raises(ModelLoadError, match="language_model"):
        load_parts(model, saved, ["lm"])


def test_position_table_resize_keeps_a_smooth_table():
    grid = torch.linspace(0, 1, 4)
    table = torch.cat([torch.full((1, 2), 7.0),
                       torch.stack([grid.repeat(4), grid.repeat_interleave(4)], 1)])
    out = resize_position_table(table, 8)
    assert out.shape == (65, 2) and torch.equal(out[0], table[0])
    x = out[1:, 0].reshape(8, 8)
    assert (x[:, 1:] >= x[:, :-1] - 1e-6).all()  # still increasing along x
    assert torch.equal(resize_position_table(table, 4), table)
