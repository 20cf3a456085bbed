"""Silhouette embedding of a region mask, added to its mask-pooled feature (an addition beyond
the paper, ``RGPTConfig.use_mask_encoder``, off by default).

Why: mask pooling averages the feature map inside a mask, so the region token keeps what the
features say but not the outline the mask draws. Osprey (CVPR 2024) adds a second embedding
computed from the binary mask alone for that reason; we add ours to the pooled feature instead,
which keeps RGPT's one token per ``<region>``. A small strided conv net with global max and
mean pooling reads the outline where the mask lies (shape, extent), independent of colour.

Off by default: a model converted from LLaVA/CLIP keeps the paper's pure mask pooling. The
output layer starts at zero, so switching it on for a trained model changes nothing until it
is trained. What it measured: docs/ADDITIONS.md.
"""

from __future__ import annotations

import torch
from torch import nn

from .mask_pooling import resize_masks


class MaskShapeEncoder(nn.Module):
    """(R, H, W) mask weights in [0, 1], any size -> (R, out_dim)."""

    def __init__(self, out_dim: int, resolution: int = 128,
                 channels: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__()
        self.resolution = resolution
        layers: list[nn.Module] = []
        c_in = 1
        for i, c_out in enumerate(channels):
            k = 5 if i == 0 else 3
            layers += [nn.Conv2d(c_in, c_out, k, stride=2, padding=k // 2), nn.GELU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.out = nn.Linear(2 * c_in, out_dim)
        self.out._zero_init = True  # RGPTForCausalLM._init_weights keeps it at zero
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}"

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        x = resize_masks(masks, (self.resolution, self.resolution))
        h = self.convs(x[:, None].to(self.out.weight.dtype))
        return self.out(torch.cat([h.amax(dim=(2, 3)), h.mean(dim=(2, 3))], dim=1))
