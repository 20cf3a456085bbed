"""Mask silhouette encoder: neutral when untrained, shape-sensitive, saved, exported to ONNX."""

from __future__ import annotations

import torch

from rgpt_model.build import load_model
from rgpt_model.data.shapes import shape_mask
from rgpt_model.mask_encoder import MaskShapeEncoder
from rgpt_model.onnx_encoder import OnnxRegionEncoder
from rgpt_model.onnx_export import export_region_encoder
from rgpt_model.tiny import make_tiny_model


def _shapes(size: int = 64) -> torch.Tensor:
    return torch.stack([torch.from_numpy(shape_mask(s, 32, 32, 30, size, size)).float()
                        for s in ("circle", "square", "star")])


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def test_untrained_encoder_adds_nothing():
    enc = MaskShapeEncoder(8)
    out = enc(_shapes())
    assert out.shape == (3, 8)
    assert torch.count_nonzero(out) == 0


def test_distinguishes_outlines_of_equal_position():
    enc = MaskShapeEncoder(8)
    _randomise(enc)
    out = enc(_shapes())
    assert torch.cdist(out, out)[~torch.eye(3, dtype=torch.bool)].min() > 1e-3
    # any input size: the encoder resizes to its own resolution
    big = enc(torch.nn.functional.interpolate(_shapes()[:, None], size=128)[:, 0])
    assert big.shape == (3, 8)


def test_model_with_mask_encoder_saves_loads_and_exports(tmp_path):
    path = make_tiny_model(tmp_path / "m", use_mask_encoder=True)
    model = load_model(path)
    assert model.mask_encoder is not None and model.config.use_mask_encoder
    _randomise(model.mask_encoder, seed=1)
    model.save_pretrained(path)
    model = load_model(path)
    s = model.config.image_size
    px = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
    masks = torch.nn.functional.interpolate(_shapes()[:, None], size=s)[:, 0]
    with torch.no_grad():
        g_ref, r_ref = model.region_encoder(px, masks)
        encoder = model.region_encoder
        pooled_only = encoder.region_features(encoder.vision_features(px)[0], masks) \
            - model.mask_encoder(masks)
    assert not torch.allclose(r_ref, pooled_only)  # the silhouette term is really added
    enc = OnnxRegionEncoder(export_region_encoder(model, tmp_path / "enc.onnx"), providers="cpu")
    g, r = enc(px, masks)
    assert (g - g_ref).abs().max().item() <= 1e-4
    scale = r_ref.abs().max().item()
    assert (r - r_ref).abs().max().item() <= 1e-5 * max(scale, 10.0)
