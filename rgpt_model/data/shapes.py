"""Rasterise the synthetic shape kinds as boolean masks (numpy + skimage, deterministic)."""

from __future__ import annotations

import math

import numpy as np
from skimage.draw import polygon2mask

from rgpt_model.data.attributes import SHAPES


def _regular(n: int, radius: float, start_deg: float) -> np.ndarray:
    ang = np.deg2rad(start_deg + np.arange(n) * 360.0 / n)
    return np.stack([radius * np.cos(ang), radius * np.sin(ang)], axis=1)


def _star() -> np.ndarray:
    pts = []
    for k in range(10):
        r = 1.0 if k % 2 == 0 else 0.45
        a = math.radians(-90 + k * 36)
        pts.append((r * math.cos(a), r * math.sin(a)))
    return np.array(pts)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], axis=1) / 16.5
    return pts


def _cross() -> np.ndarray:
    a, b = 0.34, 1.0
    return np.array(
        [
            (-a, -b),
            (a, -b),
            (a, -a),
            (b, -a),
            (b, a),
            (a, a),
            (a, b),
            (-a, b),
            (-a, a),
            (-b, a),
            (-b, -a),
            (-a, -a),
        ]
    )


# Unit outlines (x, y), y pointing down, fitting in [-1, 1]^2.
_OUTLINES: dict[str, np.ndarray] = {
    "square": np.array([(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]),
    "triangle": np.array([(0.0, -1.0), (1.0, 0.8), (-1.0, 0.8)]),
    "star": _star(),
    "hexagon": _regular(6, 1.0, 0.0),
    "cross": _cross(),
    "diamond": np.array([(0.0, -1.0), (0.72, 0.0), (0.0, 1.0), (-0.72, 0.0)]),
    "heart": _heart(),
}


def shape_mask(
    shape: str, cx: float, cy: float, extent: float, height: int, width: int,
    rotation_deg: float = 0.0,
) -> np.ndarray:
    """Boolean HxW mask of ``shape`` centred at (cx, cy) with bounding diameter ``extent``,
    turned by ``rotation_deg`` (clockwise on screen, y pointing down)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    r = extent / 2.0
    if shape == "circle":
        yy, xx = np.mgrid[0:height, 0:width]
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    pts = _OUTLINES[shape]
    if rotation_deg:
        a = math.radians(rotation_deg)
        pts = pts @ np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    rows = cy + r * pts[:, 1]
    cols = cx + r * pts[:, 0]
    return polygon2mask((height, width), np.stack([rows, cols], axis=1))
