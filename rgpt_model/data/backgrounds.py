"""Backgrounds in muted tones: gradient, stripes, or texture (plus noise, added later).

Muted, low-saturation mid-tones keep every object colour, white and black included,
clearly separable from the background. "texture" (smooth blotches at two scales plus thin
line clutter) gives the background edges and structure of its own, so a model cannot find
objects as the only edges in the frame (issue 20: textured backgrounds dropped the demo
model's classification to 57-74 %).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.draw import line_aa

BACKGROUND_KINDS: tuple[str, ...] = ("gradient", "stripes", "texture")


def _muted_tone(rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(95.0, 165.0)
    return base + rng.uniform(-14.0, 14.0, size=3)


def _smooth_field(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """Zero-mean, unit-peak smooth noise whose blotches are about ``scale`` pixels wide."""
    step = max(int(scale / 4), 1)  # draw coarse, then upsample: same look, far cheaper
    small = rng.standard_normal((height // step + 2, width // step + 2))
    small = ndimage.gaussian_filter(small, max(scale / (2.0 * step), 0.5))
    field = ndimage.zoom(small, step, order=1)[:height, :width]
    field -= field.mean()
    return field / max(float(np.abs(field).max()), 1e-6)


def _texture(rng: np.random.Generator, height: int, width: int, c0: np.ndarray,
             c1: np.ndarray) -> np.ndarray:
    side = min(height, width)
    # two tones apart in brightness, hardly in hue (muted), so the blotches show
    mid = (c0 + c1) / 2.0
    offset = rng.uniform(22.0, 38.0) + rng.uniform(-8.0, 8.0, size=3)
    c0, c1 = mid - offset, mid + offset
    coarse = _smooth_field(rng, height, width, rng.uniform(0.08, 0.25) * side)
    fine = _smooth_field(rng, height, width, rng.uniform(0.015, 0.04) * side)
    t = 0.5 + 0.5 * coarse + rng.uniform(0.25, 0.5) * fine
    img = c0[None, None, :] * (1.0 - t[..., None]) + c1[None, None, :] * t[..., None]
    width_px = max(int(round(side / 160)), 1)
    for _ in range(int(rng.integers(4, 12))):  # muted lines: edges that are no object
        r0, r1 = rng.integers(0, height, size=2)
        q0, q1 = rng.integers(0, width, size=2)
        tone = _muted_tone(rng)
        for off in range(width_px):
            rr, cc, val = line_aa(int(r0) + off, int(q0), int(r1) + off, int(q1))
            keep = rr < height
            rr, cc, val = rr[keep], cc[keep], val[keep]
            img[rr, cc] = img[rr, cc] * (1.0 - val[:, None]) + tone[None, :] * val[:, None]
    return np.clip(img, 60.0, 195.0)


def make_background(
    rng: np.random.Generator, height: int, width: int, kind: str | None = None
) -> np.ndarray:
    """Float32 HxWx3 background in [0, 255] without noise (noise is added after compositing).

    ``kind`` None draws gradient or stripes (the original two kinds).
    """
    if kind is None:
        kind = BACKGROUND_KINDS[int(rng.integers(2))]
    if kind not in BACKGROUND_KINDS:
        raise ValueError(f"unknown background kind {kind!r}; expected one of {BACKGROUND_KINDS}")
    c0, c1 = _muted_tone(rng), _muted_tone(rng)
    if kind == "texture":
        return _texture(rng, height, width, c0, c1).astype(np.float32)
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
