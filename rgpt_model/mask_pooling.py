"""Mask Pooling: one feature vector per region, the mask-weighted mean of a feature map.

``resize_masks`` brings masks (any resolution) to the feature grid with bilinear interpolation.
Tiny objects can vanish under bilinear downsampling (it samples only a few input pixels per
output cell), so a mask whose bilinear result sums to (almost) zero falls back to **area**
resizing (the mean of the input pixels each cell covers): every non-empty mask keeps positive
weight on the cells it overlaps, so its feature is the (weighted) mean of those cells.
The choice is made with ``torch.where`` (no Python branching), so the path traces to ONNX.
An all-zero input mask has no feature: :func:`mask_pool` raises EmptyMaskError (eager mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import EmptyMaskError, InvalidMaskError

_EPS = 1e-6


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def resize_masks(masks: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize (R, H, W) masks to ``size`` as float weights in [0, 1] (bilinear, area fallback)."""
    if isinstance(size, int):
        size = (size, size)
    if masks.ndim != 3:
        raise InvalidMaskError(f"masks must be (R, H, W), got shape {tuple(masks.shape)}")
    m = masks.float().unsqueeze(1)
    if m.shape[0] == 0:
        return m.new_zeros((0,) + tuple(size))
    bil = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    area = F.interpolate(m, size=size, mode="area")
    vanished = bil.sum(dim=(1, 2, 3), keepdim=True) <= _EPS
    return torch.where(vanished, area, bil).squeeze(1).clamp(0.0, 1.0)


def mask_pool(
    features: torch.Tensor,
    masks: torch.Tensor,
    image_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Average ``features`` inside each mask: sum(mask * feat) / sum(mask).

    features: (B, C, h, w) feature maps. masks: (R, h, w) weights already at feature resolution
    (see :func:`resize_masks`). image_index: (R,) which of the B maps each mask belongs to
    (default: all from map 0). Returns (R, C). Computed as one matrix product over the B*h*w
    cells, so memory is R*B*h*w rather than R*C*h*w.
    """
    if features.ndim != 4:
        raise InvalidMaskError(f"features must be (B, C, h, w), got {tuple(features.shape)}")
    b, c, h, w = features.shape
    if masks.ndim != 3 or tuple(masks.shape[1:]) != (h, w):
        raise InvalidMaskError(
            f"masks must be (R, {h}, {w}) to match the feature grid, got {tuple(masks.shape)}; "
            "resize them with resize_masks first"
        )
    weights = masks.to(features.dtype).reshape(masks.shape[0], h * w)
    sums = weights.sum(dim=1, keepdim=True)
    if not _tracing() and masks.shape[0] and bool((sums <= 0).any()):
        bad = torch.nonzero(sums[:, 0] <= 0).flatten().tolist()
        raise EmptyMaskError(f"mask(s) at position(s) {bad} are all zero and have no feature")
    if image_index is None:
        image_index = torch.zeros(masks.shape[0], dtype=torch.long, device=masks.device)
    onehot = F.one_hot(image_index.long(), b).to(features.dtype)  # (R, B)
    full = (onehot[:, :, None] * weights[:, None, :]).reshape(masks.shape[0], b * h * w)
    flat = features.permute(0, 2, 3, 1).reshape(b * h * w, c)
    return (full @ flat) / sums.clamp_min(_EPS)
