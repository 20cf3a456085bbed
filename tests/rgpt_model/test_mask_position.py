"""Mask position encoder: reads where a mask lies, neutral until trained, loads into older
models, saved, exported to ONNX."""

from __future__ import annotations

import torch

from rgpt_model.build import load_model
from rgpt_model.config import RGPTConfig
from rgpt_model.mask_encoder import MaskShapeEncoder
from rgpt_model.mask_position import MaskPositionEncoder, mask_moments
from rgpt_model.modeling import RGPTForCausalLM
from rgpt_model.onnx_encoder import OnnxRegionEncoder
from rgpt_model.onnx_export import export_region_encoder
from rgpt_model.tiny import make_tiny_model, tiny_config


def _boxes(size: int = 64) -> torch.Tensor:
    """Left-top small box, right-bottom wide box, and the same small box moved right."""
    m = torch.zeros(3, size, size)
    m[0, 0:16, 0:16] = 1
    m[1, 48:64, 16:64] = 1
    m[2, 0:16, 32:48] = 1
    return m


def test_moments_are_centre_and_spread_in_the_unit_frame():
    mom = mask_moments(_boxes(), resolution=64)
    torch.testing.assert_close(mom[0, :2], torch.tensor([0.125, 0.125]))
    torch.testing.assert_close(mom[1, :2], torch.tensor([0.625, 0.875]))
    # a uniform box of width w has spread w / sqrt(12)
    torch.testing.assert_close(mom[1, 2:], torch.tensor([0.75, 0.25]) / 12 ** 0.5, atol=2e-3,
                               rtol=0)
    assert torch.equal(mask_moments(torch.zeros(1, 8, 8), 8), torch.zeros(1, 4))


def test_untrained_encoder_adds_nothing_and_trained_tells_positions_apart():
    enc = MaskPositionEncoder(8)
    assert torch.count_nonzero(enc(_boxes())) == 0
    with torch.no_grad():
        enc.out.weight.normal_()
    out = enc(_boxes())
    # the two equal boxes differ only in where they lie; a silhouette encoder cannot see it
    assert (out[0] - out[2]).abs().max() > 1e-3
    shape_only = MaskShapeEncoder(8)
    with torch.no_grad():
        shape_only.out.weight.normal_()
    sil = shape_only(_boxes())
    assert (sil[0] - sil[2]).abs().max() < (out[0] - out[2]).abs().max()


def test_scale_multiplies_the_output():
    plain, scaled = MaskPositionEncoder(8), MaskPositionEncoder(8, scale=3.0)
    scaled.load_state_dict(plain.state_dict())  # the scale is config, not a weight
    with torch.no_grad():
        plain.out.weight.normal_(generator=torch.Generator().manual_seed(0))
        scaled.out.weight.copy_(plain.out.weight)
        torch.testing.assert_close(scaled(_boxes()), 3.0 * plain(_boxes()))


def test_zero_init_survives_model_init_and_loading_an_older_model(tmp_path):
    torch.manual_seed(0)
    model = RGPTForCausalLM(tiny_config(50, use_mask_encoder=True, use_mask_position=True))
    assert torch.count_nonzero(model.mask_encoder.out.weight) == 0  # transformers' init skipped
    assert torch.count_nonzero(model.mask_position.out.weight) == 0
    path = make_tiny_model(tmp_path / "old")  # saved without the position encoder
    old = load_model(path)
    cfg = RGPTConfig.from_pretrained(path)
    cfg.use_mask_position = True
    new = RGPTForCausalLM.from_pretrained(path, config=cfg)
    assert torch.count_nonzero(new.mask_position.out.weight) == 0
    s = old.config.image_size
    px = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
    masks = torch.nn.functional.interpolate(_boxes()[:, None], size=s)[:, 0]
    with torch.no_grad():
        assert torch.equal(old.region_encoder(px, masks)[1], new.region_encoder(px, masks)[1])


def test_model_with_mask_position_saves_loads_and_exports(tmp_path):
    path = make_tiny_model(tmp_path / "m", use_mask_position=True, mask_position_scale=4.0)
    model = load_model(path)
    assert model.mask_position.scale == 4.0
    with torch.no_grad():
        model.mask_position.out.weight.normal_(generator=torch.Generator().manual_seed(1))
    s = model.config.image_size
    masks = torch.nn.functional.interpolate(_boxes()[:, None], size=s)[:, 0]
    with torch.no_grad():
        trained = model.mask_position(masks)
    model.save_pretrained(path)
    model = load_model(path)
    assert model.config.use_mask_position and torch.count_nonzero(model.mask_position.out.weight)
    with torch.no_grad():  # the loaded model's Fourier features are the trained model's
        assert torch.equal(model.mask_position(masks), trained)
    px = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        g_ref, r_ref = model.region_encoder(px, masks)
    enc = OnnxRegionEncoder(export_region_encoder(model, tmp_path / "enc.onnx"), providers="cpu")
    g, r = enc(px, masks)
    assert (g - g_ref).abs().max().item() <= 1e-4
    assert (r - r_ref).abs().max().item() <= 1e-5 * max(r_ref.abs().max().item(), 10.0)
