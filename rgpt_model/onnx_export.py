"""Export the region encoder (vision tower + refinement + mask pooling) to ONNX.

Why: the per-frame vision side is a fixed graph (one image, any number of masks), a good fit for
ONNX Runtime's CPU / CUDA / TensorRT execution providers (see :mod:`rgpt_model.onnx_encoder`).

The graph is ``model.region_encoder`` itself (:class:`~rgpt_model.region_encoder.RegionEncoder`,
as segment-anything's ``utils/onnx.py`` exports ``model.mask_decoder``): inputs
``pixel_values`` (1, 3, S, S) and ``masks`` (R, S, S) float weights (the processor's output),
outputs ``global_features`` (1, T, C) and ``region_features`` (R, C), both before the
connector. R is a dynamic axis. The export records the encoder's fingerprint in the ONNX
metadata so a stale file is detected.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

from .device import resolve_dtype
from .region_encoder import RegionEncoder

logger = logging.getLogger(__name__)

INPUT_NAMES = ["pixel_values", "masks"]
OUTPUT_NAMES = ["global_features", "region_features"]
EXPORT_DTYPES = ("float32", "float16", "bfloat16")


def region_encoder_of(model: nn.Module) -> RegionEncoder:
    """``model.region_encoder`` of an RGPT model, or ``model`` when it is the encoder."""
    return model if isinstance(model, RegionEncoder) else model.region_encoder


def model_fingerprint(model: nn.Module) -> str:
    """Short hash of the region encoder: its ``repr`` (structure, the config values it was built
    from, the sizes and scales of its parts) and its weights (sampled): decides whether a
    cached export fits."""
    encoder = region_encoder_of(model)
    h = hashlib.sha256(repr(encoder).encode())
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        flat = t.detach().float().flatten()
        h.update(flat[:: max(1, flat.numel() // 64)].cpu().numpy().tobytes())  # sampled
    return h.hexdigest()[:16]


def _export(encoder, pixels, masks, path: Path, opset: int, *, dynamo: bool) -> None:
    if dynamo:
        options = {
            "dynamic_shapes": {"pixel_values": None,
                               "masks": {0: torch.export.Dim("num_regions", min=1)}},
            "opset_version": max(opset, 18),
            "external_data": False,
            "verbose": False,
        }
    else:
        options = {
            "dynamic_axes": {"masks": {0: "num_regions"}, "region_features": {0: "num_regions"}},
            "opset_version": opset,
            "do_constant_folding": True,
        }
    torch.onnx.export(encoder, (pixels, masks), str(path), input_names=INPUT_NAMES,
                      output_names=OUTPUT_NAMES, dynamo=dynamo, **options)


def export_region_encoder(
    model: nn.Module,
    path: str | Path,
    *,
    dtype: str = "float32",
    opset: int = 17,
    num_regions: int = 3,
    dynamo: bool | None = None,
) -> Path:
    """Write ``model.region_encoder`` (or ``model``, a RegionEncoder) to ``path`` (.onnx) and
    return the path.

    ``dtype`` float16 exports a half-precision graph (for CUDA / TensorRT providers).
    ``dynamo``: True = torch.export-based exporter (needs onnxscript), False = TorchScript
    exporter, None (default) = TorchScript (quicker) and, where it cannot express the graph,
    torch.export: e.g. area-resizing masks 336 -> 96 (not a whole factor) is an
    ``adaptive_avg_pool2d`` that only the torch.export exporter handles.
    """
    import onnx

    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"dtype must be one of {EXPORT_DTYPES}, got {dtype!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tdtype = resolve_dtype(dtype)
    encoder = region_encoder_of(model).eval()
    fingerprint = model_fingerprint(encoder)
    if next(encoder.parameters()).dtype != tdtype:  # convert a copy of the encoder, never the LM
        encoder = copy.deepcopy(encoder).to(tdtype)
    device = next(encoder.parameters()).device
    s = encoder.config.image_size
    pixels = torch.randn(1, 3, s, s, device=device, dtype=tdtype)
    masks = torch.zeros(num_regions, s, s, device=device, dtype=tdtype)
    for i in range(num_regions):
        masks[i, : s // (i + 2), : s // (i + 1)] = 1
    logger.info("exporting region encoder (%s, opset %d) to %s", dtype, opset, path)
    with torch.no_grad():
        if dynamo is None and s % encoder.refined_grid_size:
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
        "rgpt_num_global_tokens": str(encoder.config.num_global_tokens),
    }
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m rgpt_model.onnx_export MODEL_DIR OUT.onnx [--dtype float16]``."""
    import argparse

    from .build import load_model

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("model_dir")
    ap.add_argument("output")
    ap.add_argument("--dtype", default="float32", choices=EXPORT_DTYPES)
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
