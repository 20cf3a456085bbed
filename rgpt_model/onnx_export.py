"""Export the region encoder (vision tower + refinement + mask pooling) to ONNX.

Why: the per-frame vision side is a fixed graph (one image, any number of masks), a good fit for
ONNX Runtime's CPU / CUDA / TensorRT execution providers (see :mod:`rgpt_model.onnx_encoder`).

The graph is ``RGPTForCausalLM.encode_regions``: inputs ``pixel_values`` (1, 3, S, S) and
``masks`` (R, S, S) float weights (the processor's output), outputs ``global_features``
(1, T, C) and ``region_features`` (R, C), both before the connector. R is a dynamic axis.
The export records the model's fingerprint in the ONNX metadata so a stale file is detected.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

INPUT_NAMES = ["pixel_values", "masks"]
OUTPUT_NAMES = ["global_features", "region_features"]
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class RegionEncoder(nn.Module):
    """``encode_regions`` as a module with plain tensor inputs/outputs (what gets exported)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, pixel_values: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode_regions(pixel_values, masks)


class _VisionSide(nn.Module):
    """Only the vision tower and refiner of an RGPT model (in ``dtype``), with its
    ``encode_regions``: exporting never touches (or copies) the language model."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        import copy

        super().__init__()
        self.config = model.config
        same = next(model.vision_tower.parameters()).dtype == dtype
        conv = (lambda m: m) if same else (lambda m: copy.deepcopy(m).to(dtype))
        self.vision_tower = conv(model.vision_tower)
        self.refiner = conv(model.refiner) if model.refiner is not None else None
        self.mask_encoder = conv(model.mask_encoder) if model.mask_encoder is not None else None
        self.mask_position = conv(model.mask_position) if model.mask_position is not None else None
        cls = type(model)
        self._fns = {
            k: getattr(cls, k).__get__(self)
            for k in ("vision_features", "global_features", "region_features", "encode_regions")
        }

    def encode_regions(self, pixel_values, masks, region_image_index=None):
        return self._fns["encode_regions"](pixel_values, masks, region_image_index)

    def __getattr__(self, name: str):
        fns = self.__dict__.get("_fns")
        if fns is not None and name in fns:
            return fns[name]
        return super().__getattr__(name)


def model_fingerprint(model: nn.Module) -> str:
    """Short hash of the vision-side config and weights (decides whether a cached export fits)."""
    h = hashlib.sha256()
    cfg = model.config
    keys = (
        "image_size",
        "vision_feature_layer",
        "vision_feature_select_strategy",
        "use_refinement",
        "refiner_hidden_size",
        "patch_merge_factor",
        "use_mask_encoder",
        "mask_encoder_resolution",
        "use_mask_position",
        "mask_position_resolution",
        "mask_position_scale",
    )
    h.update(json.dumps({k: getattr(cfg, k, None) for k in keys}, sort_keys=True).encode())
    h.update(json.dumps(cfg.vision_config.to_dict(), sort_keys=True, default=str).encode())
    region_side = (model.refiner, model.mask_encoder, model.mask_position)
    parts = [model.vision_tower] + [m for m in region_side if m is not None]
    for part in parts:
        for name, t in sorted(part.state_dict().items()):
            h.update(name.encode())
            flat = t.detach().float().flatten()
            h.update(flat[:: max(1, flat.numel() // 64)].cpu().numpy().tobytes())  # sampled
    return h.hexdigest()[:16]


def _export(encoder, pixels, masks, path: Path, opset: int, *, dynamo: bool) -> None:
    if dynamo:
        r = torch.export.Dim("num_regions", min=1)
        torch.onnx.export(
            encoder,
            (pixels, masks),
            str(path),
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_shapes={"pixel_values": None, "masks": {0: r}},
            opset_version=max(opset, 18),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    else:
        torch.onnx.export(
            encoder,
            (pixels, masks),
            str(path),
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes={"masks": {0: "num_regions"}, "region_features": {0: "num_regions"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def export_region_encoder(
    model: nn.Module,
    path: str | Path,
    *,
    dtype: str = "float32",
    opset: int = 17,
    num_regions: int = 3,
    dynamo: bool | None = None,
) -> Path:
    """Write the region encoder of ``model`` to ``path`` (.onnx) and return the path.

    ``dtype`` float16 exports a half-precision graph (for CUDA / TensorRT providers).
    ``dynamo``: True = torch.export-based exporter (needs onnxscript), False = TorchScript
    exporter, None (default) = TorchScript (quicker) and, where it cannot express the graph,
    torch.export: e.g. area-resizing masks 336 -> 96 (not a whole factor) is an
    ``adaptive_avg_pool2d`` that only the torch.export exporter handles.
    """
    import onnx

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tdtype = _DTYPES[dtype]
    device = next(model.parameters()).device
    fingerprint = model_fingerprint(model)
    model = _VisionSide(model.eval(), tdtype)
    s = int(model.config.image_size)
    pixels = torch.randn(1, 3, s, s, device=device, dtype=tdtype)
    masks = torch.zeros(num_regions, s, s, device=device, dtype=tdtype)
    for i in range(num_regions):
        masks[i, : s // (i + 2), : s // (i + 1)] = 1
    encoder = RegionEncoder(model).eval()
    logger.info("exporting region encoder (%s, opset %d) to %s", dtype, opset, path)
    with torch.no_grad():
        if dynamo is None and s % int(model.config.refined_grid_size):
            dynamo = True  # area resize by a fractional factor: TorchScript cannot export it
        if dynamo is None:
            try:
                _export(encoder, pixels, masks, path, opset, dynamo=False)
            except Exception as exc:  # noqa: BLE001 - unsupported op: use the other exporter
                logger.info("TorchScript export failed (%s); using torch.export", str(exc)[:200])
                _export(encoder, pixels, masks, path, opset, dynamo=True)
        else:
            _export(encoder, pixels, masks, path, opset, dynamo=dynamo)
    proto = onnx.load(str(path), load_external_data=False)
    meta = {
        "rgpt_fingerprint": fingerprint,
        "rgpt_image_size": str(s),
        "rgpt_dtype": dtype,
        "rgpt_num_global_tokens": str(model.config.num_global_tokens),
    }
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m rgpt_model.onnx_export MODEL_DIR OUT.onnx [--dtype float16]``."""
    import argparse

    from .modeling import load_model

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("model_dir")
    ap.add_argument("output")
    ap.add_argument("--dtype", default="float32", choices=sorted(_DTYPES))
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument(
        "--dynamo",
        action="store_true",
        default=None,
        help="force the torch.export exporter (default: TorchScript, then torch.export)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    model = load_model(args.model_dir)
    export_region_encoder(
        model, args.output, dtype=args.dtype, opset=args.opset, dynamo=args.dynamo
    )
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
