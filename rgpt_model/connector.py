"""The connector: one 2-layer MLP (GELU) that maps vision features into the LLM embedding space.

Same parameter names as LLaVA's ``multi_modal_projector`` (linear_1, linear_2) so LLaVA-1.5
weights load unchanged. RGPT shares it between global (image) and region features.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN


class RGPTConnector(nn.Module):
    """Linear -> act -> Linear, vision hidden size -> text hidden size."""

    def __init__(self, in_dim: int, out_dim: int, act: str = "gelu", bias: bool = True) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, out_dim, bias=bias)
        self.act = ACT2FN[act]
        self.linear_2 = nn.Linear(out_dim, out_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))
