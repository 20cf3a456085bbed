"""Feature refinement: upsample the ViT patch grid 4x before mask pooling.

Two ConvTranspose2d(kernel 2, stride 2) layers with LayerNorm (over channels) and GELU between
them, as in RGPT / Omni-RGPT: a 24x24 grid becomes 96x96, giving small regions more cells.
"""

from __future__ import annotations

import torch
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class FeatureRefiner(nn.Module):
    """(B, C, h, w) -> (B, C, 4h, 4w); output channels equal input so the connector is shared."""

    def __init__(self, channels: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or channels
        self.up1 = nn.ConvTranspose2d(channels, hidden, kernel_size=2, stride=2)
        self.norm = LayerNorm2d(hidden)
        self.act = nn.GELU()
        self.up2 = nn.ConvTranspose2d(hidden, channels, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up2(self.act(self.norm(self.up1(x))))
