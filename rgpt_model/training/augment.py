"""Grey repaint: a shape-only view of a synthetic scene for vision pretraining.

Held-out colour-shape pairs (e.g. no red star in training) let a from-scratch tower learn
"red, so not a star". Repainting every object with a random grey level (background turned
to luminance) shows shapes with no colour at all, so the shape signal cannot lean on colour,
and no held-out pair is ever shown in colour.
"""

from __future__ import annotations

import numpy as np

_LUMA = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)


def grey_repaint(image: np.ndarray, masks: np.ndarray, rng: np.random.Generator,
                 noise_std: float = 5.0) -> np.ndarray:
    """(H, W, 3) uint8 copy: luminance background, each mask a random uniform grey + noise."""
    grey = image.astype(np.float32) @ _LUMA
    for mask in np.asarray(masks, dtype=bool):
        grey[mask] = rng.uniform(0.0, 255.0)
    grey += rng.normal(0.0, noise_std, size=grey.shape).astype(np.float32)
    out = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return np.repeat(out[:, :, None], 3, axis=2)
