"""ONNX Runtime backend for the region encoder (vision tower + refinement + mask pooling).

Why: ONNX Runtime (CPU, CUDA or TensorRT execution providers) runs the per-frame encoder with
less framework overhead than eager PyTorch and lets a robot deploy without a CUDA PyTorch.
:class:`OnnxRegionEncoder` returns exactly what ``RGPTForCausalLM.encode_regions`` returns, so
the predictor can use either (``RGPTPredictor(..., backend="onnx")``).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence

logger = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_DEFAULT_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def _cuda_usable() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


def _tensorrt_usable() -> bool:
    for name in ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def usable_providers() -> list[str]:
    """Providers this onnxruntime build offers *and* this machine can run.

    onnxruntime-gpu lists CUDA/TensorRT even on a machine without a GPU (session creation then
    logs an error and falls back), so those are kept only when a GPU / libnvinfer is present.
    """
    import onnxruntime as ort

    offered = ort.get_available_providers()
    ok = []
    for p in offered:
        if p == "CUDAExecutionProvider" and not _cuda_usable():
            continue
        if p == "TensorrtExecutionProvider" and not (_cuda_usable() and _tensorrt_usable()):
            continue
        ok.append(p)
    if "CPUExecutionProvider" not in ok:
        ok.append("CPUExecutionProvider")
    return ok


def select_providers(requested: str | Sequence[str] | None = None) -> list[str]:
    """Resolve ``"auto"``/None, an alias (``"cuda"``, ``"tensorrt"``, ``"cpu"``) or a list.

    "auto" prefers TensorRT, then CUDA, then CPU among :func:`usable_providers`. An explicit
    request for a provider this machine cannot run falls back to the next usable one (logged);
    CPU is always last so a session can be built.
    """
    usable = usable_providers()
    if requested is None or requested == "auto":
        wanted: list[str] = list(_DEFAULT_ORDER)
    else:
        items = [requested] if isinstance(requested, str) else list(requested)
        wanted = [PROVIDER_ALIASES.get(str(r).lower(), str(r)) for r in items]
    chosen = [p for p in wanted if p in usable]
    dropped = [p for p in wanted if p not in usable]
    if dropped and requested not in (None, "auto"):
        logger.warning("ONNX Runtime providers %s not usable here; using %s", dropped, chosen)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    if "CUDAExecutionProvider" in chosen or "TensorrtExecutionProvider" in chosen:
        try:  # onnxruntime >= 1.21 can load CUDA/cuDNN from the torch/nvidia wheels
            import onnxruntime as ort

            if hasattr(ort, "preload_dlls"):
                ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001
            logger.debug("onnxruntime.preload_dlls failed: %s", exc)
    return chosen
