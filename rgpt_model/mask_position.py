"""Position embedding of a region mask, added to its mask-pooled feature (an addition beyond
the paper, ``RGPTConfig.use_mask_position``, off by default).

Why: mask pooling averages features, and the silhouette encoder pools globally, so neither says
reliably *where* a region lies, which directional expressions ("the leftmost square", "the
circle left of the star") need. Region-level VLMs that answer spatial questions feed the
region's coordinates in (GPT4RoI and Shikra as box numbers, Ferret as a spatial-aware
sampler); here the mask's first and second moments (centre and spread on each axis, in the
square input frame, 0..1) and Fourier features of the centre go through a small MLP.

The output layer starts at zero, so a trained model with the encoder switched on answers
exactly as before until a stage trains it. ``scale`` (``RGPTConfig.mask_position_scale``)
multiplies the output, so the zero-initialised layer, which Adam grows by about the learning
rate per step, can reach the scale of the pooled feature it is added to. What it measured:
docs/ADDITIONS.md.

``spread=False`` (``RGPTConfig.mask_position_spread``) feeds constants instead of the spread:
the spread's aspect (a diamond is 0.72 as wide as tall) lets the outline alone hint at the
class, which issue 20 rules out; the centre says where, not what.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .mask_pooling import resize_masks


def mask_moments(masks: torch.Tensor, resolution: int) -> torch.Tensor:
    """(R, H, W) mask weights -> (R, 4): centre x, centre y, spread x, spread y in 0..1.

    An empty mask gives zeros. Only tensor ops, so the ONNX export traces it.
    """
    w = resize_masks(masks, (resolution, resolution))
    coords = (torch.arange(resolution, dtype=w.dtype, device=w.device) + 0.5) / resolution
    out = []
    total = w.sum(dim=(1, 2)).clamp_min(1e-6)
    for profile in (w.sum(dim=1), w.sum(dim=2)):  # (R, W) columns -> x, (R, H) rows -> y
        centre = (profile * coords).sum(dim=1) / total
        var = (profile * (coords - centre[:, None]) ** 2).sum(dim=1) / total
        out.append((centre, var.clamp_min(0.0).sqrt()))
    (cx, sx), (cy, sy) = out
    return torch.stack([cx, cy, sx, sy], dim=1)


class MaskPositionEncoder(nn.Module):
    """(R, H, W) mask weights in [0, 1], any size -> (R, out_dim)."""

    def __init__(self, out_dim: int, resolution: int = 64, frequencies: int = 4,
                 hidden: int = 64, scale: float = 1.0, spread: bool = True) -> None:
        super().__init__()
        self.resolution = resolution
        self.scale = scale
        self.spread = spread
        # computed in forward, not held in a buffer: a model loaded with from_pretrained
        # leaves non-persistent buffers of custom modules uninitialised (garbage frequencies)
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(4 + 4 * frequencies, hidden), nn.GELU())
        self.out = nn.Linear(hidden, out_dim)
        self.out._zero_init = True  # RGPTForCausalLM._init_weights keeps it at zero
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def extra_repr(self) -> str:  # the scale is no weight: the repr carries it (fingerprint)
        spread = "" if self.spread else ", spread=False"  # the default repr stays as it was
        return (f"resolution={self.resolution}, frequencies={self.frequencies}, "
                f"scale={self.scale}{spread}")

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        m = mask_moments(masks, self.resolution).to(self.out.weight.dtype)
        if not self.spread:
            m = torch.cat([m[:, :2], torch.zeros_like(m[:, 2:])], dim=1)
        freqs = math.pi * 2.0 ** torch.arange(self.frequencies, dtype=m.dtype, device=m.device)
        angles = m[:, :2, None] * freqs  # (R, 2, F)
        feats = torch.cat([2.0 * m - 1.0, angles.sin().flatten(1), angles.cos().flatten(1)], 1)
        return self.out(self.mlp(feats)) * self.scale
