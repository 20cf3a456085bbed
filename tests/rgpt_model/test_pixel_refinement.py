"""Pixel detail branch of the refinement (inside the RegionEncoder): adds an image-only map to
the refined grid; starts at zero, keeps a flat image flat, survives save/load, and loads from
the issue-20 branch's layout (top-level ``pixel_branch.*``)."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from rgpt_model.build import load_model
from rgpt_model.modeling import RGPTForCausalLM
from rgpt_model.onnx_export import model_fingerprint
from rgpt_model.pixel_refinement import PixelDetailBranch
from rgpt_model.tiny import tiny_config


def _model(**kw) -> RGPTForCausalLM:
    torch.manual_seed(0)
    return RGPTForCausalLM(tiny_config(64, **kw)).eval()


def _inputs(model):
    s = model.config.image_size
    torch.manual_seed(1)
    masks = torch.zeros(2, s, s)
    masks[0, : s // 2, : s // 2] = 1
    masks[1, s // 3 :, s // 4 :] = 1
    return torch.randn(1, 3, s, s), masks


def test_untrained_branch_changes_nothing():
    model = _model(use_pixel_branch=True, pixel_branch_width=16)
    pixels, masks = _inputs(model)
    with torch.no_grad():
        g1, r1 = model.region_encoder(pixels, masks)
        model.region_encoder.pixel_branch = None
        g0, r0 = model.region_encoder(pixels, masks)
    assert torch.equal(g0, g1) and torch.equal(r0, r1)


def test_trained_branch_reads_the_image_and_keeps_a_flat_image_flat():
    model = _model(use_pixel_branch=True, pixel_branch_width=16)
    torch.nn.init.normal_(model.pixel_branch.out.weight)
    pixels, masks = _inputs(model)
    enc = model.region_encoder
    with torch.no_grad():
        _, r = enc(pixels, masks)
        _, r_other = enc(pixels.flip(-1), masks)
        flat = model.pixel_branch(torch.full_like(pixels, 0.3), (16, 16))
    assert not torch.allclose(r, r_other, atol=1e-4)
    assert torch.allclose(flat, flat[..., :1, :1].expand_as(flat), atol=1e-5)  # no border edges
    with pytest.raises(ValueError, match="pixel_values"):
        enc.region_features(torch.zeros(1, model.config.vision_config.hidden_size, 4, 4), masks)


def test_the_refined_map_is_what_the_regions_were_pooled_on():
    model = _model(use_pixel_branch=True, pixel_branch_width=16)
    torch.nn.init.normal_(model.pixel_branch.out.weight)
    pixels, masks = _inputs(model)
    enc = model.region_encoder
    with torch.no_grad():
        g, r, fmap = enc(pixels, masks, return_refined_map=True)
        grid, _ = enc.vision_features(pixels)
        r2 = enc.region_features(grid, masks, pixel_values=pixels)
    side = model.config.refined_grid_size
    assert fmap.shape == (1, model.config.vision_config.hidden_size, side, side)
    assert torch.equal(r, r2) and torch.equal(r, enc.pool_regions(fmap, masks))


def test_branch_weights_survive_save_and_load_and_the_fingerprint_sees_them(tmp_path):
    model = _model(use_pixel_branch=True, pixel_branch_width=16)
    torch.nn.init.normal_(model.pixel_branch.out.weight)
    model.save_pretrained(tmp_path / "new")
    loaded = load_model(tmp_path / "new")
    assert isinstance(loaded.pixel_branch, PixelDetailBranch)
    assert torch.equal(loaded.pixel_branch.out.weight, model.pixel_branch.out.weight)
    assert model_fingerprint(loaded) == model_fingerprint(model)
    assert model_fingerprint(_model()) != model_fingerprint(model)


def test_the_issue20_layout_loads(tmp_path):
    """The issue-20 branch saved the branch at the top level (``pixel_branch.*``)."""
    model = _model(use_pixel_branch=True, pixel_branch_width=16)
    torch.nn.init.normal_(model.pixel_branch.out.weight)
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({k.removeprefix("region_encoder."): v for k, v in weights.items()},
              tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded = load_model(tmp_path)
    for (ka, a), (kb, b) in zip(model.state_dict().items(), loaded.state_dict().items(),
                                strict=True):
        assert ka == kb and torch.equal(a, b), ka


def test_the_onnx_export_carries_the_branch_and_the_centre_only_position(tmp_path):
    from rgpt_model.onnx_encoder import OnnxRegionEncoder
    from rgpt_model.onnx_export import export_region_encoder

    model = _model(use_pixel_branch=True, pixel_branch_width=16, use_mask_position=True,
                   mask_position_spread=False)
    torch.nn.init.normal_(model.pixel_branch.out.weight, std=0.1)
    torch.nn.init.normal_(model.mask_position.out.weight, std=0.1)
    path = export_region_encoder(model, tmp_path / "enc.onnx")
    pixels, masks = _inputs(model)
    with torch.no_grad():
        g_ref, r_ref = model.region_encoder(pixels, masks)
    g, r = OnnxRegionEncoder(path, providers="cpu")(pixels, masks)
    assert (g - g_ref).abs().max().item() <= 1e-4 and (r - r_ref).abs().max().item() <= 1e-4
