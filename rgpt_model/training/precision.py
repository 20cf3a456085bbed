"""Memory savers of a training run: bf16 mixed precision and gradient checkpointing.

bf16 keeps float32 master weights and optimizer state; the forward pass runs under
``torch.autocast`` (CPU and CUDA alike), so matrix products run in bf16 while softmax, norms
and the loss stay in float32. Under FSDP the all-gathered parameters are bf16 as well
(``MixedPrecisionPolicy``), halving the gather traffic, and gradients are reduced in float32.
Gradient checkpointing recomputes each LLM decoder layer and CLIP encoder layer in the
backward pass instead of keeping its activations (transformers' own switch, non-reentrant).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype matrix products run in for ``precision`` (fp32 or bf16)."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's autocast context (a no-op for fp32)."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def fsdp_mixed_precision(precision: str) -> MixedPrecisionPolicy:
    """FSDP's policy: bf16 gathered parameters and float32 gradient reduction for bf16."""
    if precision != "bf16":
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Checkpoint every layer of the LLM and of the vision tower (``model`` is an
    RGPTForCausalLM: transformers sets the flag on each of its sub-models that has one).
    transformers 5.24 renamed the switch ``activation_checkpointing_enable``."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
