"""The one place that turns user-facing device and dtype names into torch objects.

Every entry point (predictor, node, CLI, trainer, ONNX export, benchmarks) resolves through
here, so "auto", "cuda:1" and "bf16" mean the same thing everywhere. torch is imported only
when a name is resolved: the node's parameter table and the launch file check device names
through this module without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ModelLoadError

if TYPE_CHECKING:
    import torch

DTYPE_NAMES = {  # user-facing name -> torch attribute
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
DEVICE_HELP = "auto, cpu, cuda or cuda:N"


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """'float32' / 'fp16' / 'bf16' / torch.dtype -> torch.dtype (None = float32)."""
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).strip().lower().replace("torch.", "")
    if key not in DTYPE_NAMES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of float32, float16, bfloat16")
    return getattr(torch, DTYPE_NAMES[key])


def device_name_problem(name: str) -> str:
    """Why ``name`` is not a device name this project accepts ('' when it is)."""
    text = str(name).strip().lower()
    if text in ("auto", "cpu", "cuda"):
        return ""
    if text.startswith("cuda:") and text[5:].isdigit():
        return ""
    return f"unknown device {name!r}; use one of {DEVICE_HELP}"


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> cuda when usable else cpu; 'cpu', 'cuda', 'cuda:N' checked against this host.

    Raises ModelLoadError with what to set instead when the name is unknown or the GPU is
    not there.
    """
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    text = str(name or "auto").strip().lower()
    problem = device_name_problem(text)
    if problem:
        raise ModelLoadError(problem)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device {name!r} requested but CUDA is not available here; set it to cpu or auto"
            )
        index = int(text[5:]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA "
                "device(s) exist; pick a smaller index"
            )
    return torch.device(text)
