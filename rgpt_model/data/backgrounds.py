"""Textured backgrounds (gradient or stripes, plus noise) in muted tones.

Muted, low-saturation mid-tones keep every object colour, white and black included,
clearly separable from the background.
"""

from __future__ import annotations

import numpy as np

BACKGROUND_KINDS: tuple[str, ...] = ("gradient", "stripes")


def _muted_tone(rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(95.0, 165.0)
    return base + rng.uniform(-14.0, 14.0, size=3)


def make_background(
    rng: np.random.Generator, height: int, width: int, kind: str | None = None
) -> np.ndarray:
    """Float32 HxWx3 background in [0, 255] without noise (noise is added after compositing)."""
    if kind is None:
        kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    if kind not in BACKGROUND_KINDS:
        raise ValueError(f"unknown background kind {kind!r}; expected one of {BACKGROUND_KINDS}")
    c0, c1 = _muted_tone(rng), _muted_tone(rng)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0.0, np.pi)
    proj = xx * np.cos(angle) + yy * np.sin(angle)
    if kind == "gradient":
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    else:
        period = rng.uniform(0.06, 0.15) * min(height, width)
        t = (np.floor(proj / period) % 2).astype(np.float32)
    img = c0[None, None, :] * (1.0 - t[..., None]) + c1[None, None, :] * t[..., None]
    return img.astype(np.float32)
