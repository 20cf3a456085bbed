"""Pixel detail branch of the feature refinement: a small conv net over the input image whose
map is added to the refined ViT grid before mask pooling (optional, off by default).

RGPT's refiner upsamples a pretrained CLIP grid, whose every cell already says what object it
belongs to. A tower trained from scratch on the CPU does not get there: without the mask
silhouette encoder, the demo-size ViT's pooled features named shapes at chance after 600
steps (issue 20), earlier at 49 % after 51k scenes, while colour was at 100 %. Convolutions
see edges and corners at once; five layers (three of stride 2, the last dilated) cover about
63 input pixels, an object of the demo scenes, and the map is upsampled to the refined grid
(4x the patch grid's resolution for patch 16). It reads pixels only, never masks, so the
region's class still comes from the image under the mask. Replicate padding keeps a flat
image flat (no border edges). The output layer starts at zero: switched on, a model answers as
before until the branch is trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation,
                     padding_mode="replicate")


class PixelDetailBranch(nn.Module):
    """(B, 3, S, S) normalised pixels -> (B, out_dim, h, w) at the refined grid's size."""

    def __init__(self, out_dim: int, width: int = 64) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _conv(3, w // 4, stride=2), nn.GELU(),
            _conv(w // 4, w // 2, stride=2), nn.GELU(),
            _conv(w // 2, w, stride=2), nn.GELU(),
            _conv(w, w), nn.GELU(),
            _conv(w, w, dilation=2), nn.GELU(),
        )
        self.out = nn.Conv2d(w, out_dim, 1)
        self.out._zero_init = True  # RGPTForCausalLM._init_weights keeps it at zero
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, pixel_values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.body(pixel_values.to(self.out.weight.dtype))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.out(x)
