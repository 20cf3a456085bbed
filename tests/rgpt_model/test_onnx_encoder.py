"""ONNX region encoder: export with a dynamic region count, parity with PyTorch, providers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rgpt_model.build import load_model
from rgpt_model.errors import ModelLoadError
from rgpt_model.onnx_encoder import OnnxRegionEncoder, select_providers, usable_providers
from rgpt_model.onnx_export import export_region_encoder, model_fingerprint


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    return export_region_encoder(model, tmp_path_factory.mktemp("onnx") / "enc.onnx")


def _inputs(model, n_regions: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = model.config.image_size
    px = torch.randn(1, 3, s, s, generator=g)
    masks = (torch.rand(n_regions, s, s, generator=g) > 0.6).float()
    if n_regions:
        masks[-1] = 0
        masks[-1, 3, 5] = 1  # a one-pixel region (area fallback of resize_masks)
    return px, masks


@pytest.mark.parametrize("n_regions", [1, 2, 7, 16])
def test_fp32_parity_dynamic_regions(model, onnx_path, n_regions):
    enc = OnnxRegionEncoder(onnx_path, providers="cpu")
    px, masks = _inputs(model, n_regions, seed=n_regions)
    with torch.no_grad():
        g_ref, r_ref = model.region_encoder(px, masks)
    g, r = enc(px, masks)
    assert g.shape == g_ref.shape and r.shape == (n_regions, g_ref.shape[-1])
    assert (g - g_ref).abs().max().item() <= 1e-4
    assert (r - r_ref).abs().max().item() <= 1e-4


def test_zero_regions_and_metadata(model, onnx_path):
    enc = OnnxRegionEncoder(onnx_path, providers=["CPUExecutionProvider"])
    px, _ = _inputs(model, 1)
    g, r = enc(px, torch.zeros(0, px.shape[-1], px.shape[-1]))
    assert r.shape == (0, g.shape[-1])
    assert enc.fingerprint == model_fingerprint(model)
    assert enc.providers[-1] == "CPUExecutionProvider"


def test_fp16_export_tolerance(model, tmp_path):
    """fp16 graph vs fp32 PyTorch: measured max abs diff on the tiny model is ~1e-3."""
    path = export_region_encoder(model, tmp_path / "enc16.onnx", dtype="float16")
    enc = OnnxRegionEncoder(path, providers="cpu")
    assert enc.dtype == "float16"
    # a converted copy of the region encoder was exported: the model itself stays float32
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    px, masks = _inputs(model, 5)
    with torch.no_grad():
        g_ref, r_ref = model.region_encoder(px, masks)
    g, r = enc(px, masks)
    assert (g - g_ref).abs().max().item() <= 1e-2
    assert (r - r_ref).abs().max().item() <= 1e-2


def test_for_model_caches_and_detects_stale(model, tmp_path, tiny_model_dir):
    path = tmp_path / "cached.onnx"
    a = OnnxRegionEncoder.for_model(model, path, providers="cpu")
    mtime = path.stat().st_mtime_ns
    b = OnnxRegionEncoder.for_model(model, path, providers="cpu")  # reused, not re-exported
    assert path.stat().st_mtime_ns == mtime and a.fingerprint == b.fingerprint
    other = load_model(tiny_model_dir)
    with torch.no_grad():
        other.refiner.up1.weight.add_(1.0)
    with pytest.raises(ModelLoadError, match="different model"):
        OnnxRegionEncoder(path, "cpu", expected_fingerprint=model_fingerprint(other))
    OnnxRegionEncoder.for_model(other, path, providers="cpu")  # stale file: exported again
    assert OnnxRegionEncoder(path, "cpu").fingerprint == model_fingerprint(other)


def test_provider_selection():
    usable = usable_providers()
    assert "CPUExecutionProvider" in usable
    assert select_providers("cpu") == ["CPUExecutionProvider"]
    auto = select_providers("auto")
    assert auto[-1] == "CPUExecutionProvider" and set(auto) <= set(usable)
    if not torch.cuda.is_available():  # listed by onnxruntime-gpu, but unusable without a GPU
        assert select_providers(["cuda", "tensorrt"]) == ["CPUExecutionProvider"]


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="onnx_export"):
        OnnxRegionEncoder(tmp_path / "nope.onnx")


def test_predictor_onnx_backend_matches_torch(tiny_model_dir, scene, tmp_path):
    from rgpt_model.predictor import RGPTPredictor

    img, lab = scene
    ref = RGPTPredictor.from_pretrained(tiny_model_dir)
    onnx = RGPTPredictor.from_pretrained(
        tiny_model_dir, backend="onnx", onnx_path=tmp_path / "p.onnx", providers="cpu"
    )
    a, b = ref.encode(img, lab), onnx.encode(img, lab)
    assert (a.global_embeds - b.global_embeds).abs().max().item() <= 1e-4
    assert (a.region_embeds - b.region_embeds).abs().max().item() <= 1e-4
    da = ref.describe(img, lab, max_new_tokens=4)
    db = onnx.describe(img, lab, max_new_tokens=4)
    assert [(d.label, d.caption) for d in da] == [(d.label, d.caption) for d in db]
    assert np.allclose([d.label_score for d in da], [d.label_score for d in db], atol=1e-4)


def test_fingerprint_is_derived_from_the_encoder_module(model):
    """Weights, structure and the values the encoder was built from change the fingerprint;
    the language model does not."""
    import copy

    from rgpt_model.build import build_tiny

    fp = model_fingerprint(model)
    assert model_fingerprint(model.region_encoder) == fp
    lm_changed = copy.deepcopy(model)
    with torch.no_grad():
        lm_changed.language_model.lm_head.weight.add_(1.0)
    assert model_fingerprint(lm_changed) == fp
    refined = copy.deepcopy(model.region_encoder)
    with torch.no_grad():
        refined.refiner.up2.bias.add_(1.0)
    assert model_fingerprint(refined) != fp
    positioned, _ = build_tiny(seed=0, use_mask_position=True, mask_position_scale=2.0)
    before = model_fingerprint(positioned)
    positioned.mask_position.scale = 3.0  # no weight: only the module's own value says it
    assert model_fingerprint(positioned) != before
    merged, _ = build_tiny(seed=0, patch_merge_factor=1)  # same weights, other global tokens
    assert model_fingerprint(merged) != model_fingerprint(build_tiny(seed=0)[0])


def test_torch_export_exporter_handles_the_module_too(model, tmp_path):
    """The torch.export-based exporter (used where TorchScript cannot express a resize) takes
    the region encoder module as it is, with a dynamic region count."""
    enc = OnnxRegionEncoder(export_region_encoder(model, tmp_path / "d.onnx", dynamo=True), "cpu")
    for n in (1, 6):
        px, masks = _inputs(model, n, seed=10 + n)
        with torch.no_grad():
            g_ref, r_ref = model.region_encoder(px, masks)
        g, r = enc(px, masks)
        assert r.shape == (n, g_ref.shape[-1])
        assert max((g - g_ref).abs().max().item(), (r - r_ref).abs().max().item()) <= 1e-4
