"""RegionGPT model library: region-aware LLaVA-style VLM, no ROS dependency.

Imports are lazy (``rgpt_model.RGPTPredictor`` loads torch on first use), so light submodules
such as ``rgpt_model.data`` or ``rgpt_model.errors`` do not pull in torch/transformers.
"""

from __future__ import annotations

import importlib

__all__ = [
    "RGPTConfig",
    "RGPTForCausalLM",
    "RGPTPredictor",
    "RGPTProcessor",
    "ReferResult",
    "RegionDescription",
    "default_model_path",
    "make_tiny_model",
]

_LAZY = {
    "RGPTConfig": "config",
    "RGPTForCausalLM": "modeling",
    "RGPTPredictor": "predictor",
    "RGPTProcessor": "processor",
    "ReferResult": "predictor",
    "RegionDescription": "predictor",
    "default_model_path": "demo",
    "make_tiny_model": "tiny",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
