"""Annotated debug image for rviz: mask outlines, instance ids and labels over the frame."""

from __future__ import annotations

import colorsys

import numpy as np


def _colour(region_id: int) -> tuple[int, int, int]:
    """Stable, distinct colour per id (golden-ratio hue walk)."""
    h = (region_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.9, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def outlines(labels: np.ndarray) -> np.ndarray:
    """Boolean map of pixels whose 4-neighbour has another label (region borders)."""
    edge = np.zeros(labels.shape, dtype=bool)
    diff_v = labels[1:, :] != labels[:-1, :]
    diff_h = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= diff_v
    edge[:-1, :] |= diff_v
    edge[:, 1:] |= diff_h
    edge[:, :-1] |= diff_h
    return edge & (labels != 0)


def draw(rgb: np.ndarray, labels: np.ndarray, regions: list[tuple[int, tuple, str]]) -> np.ndarray:
    """Return a copy of ``rgb`` with outlines and "id label" text at each region's box corner.

    ``regions``: (id, (x, y, w, h), label) for every region to annotate.
    """
    from PIL import Image, ImageDraw

    out = rgb.copy()
    edge = outlines(labels)
    keep = np.isin(labels, [r[0] for r in regions]) & edge
    if keep.any():
        ids = labels[keep]
        cols = np.array([_colour(int(i)) for i in range(int(ids.max()) + 1)], dtype=np.uint8) \
            if ids.max() < 4096 else None
        if cols is not None:
            out[keep] = cols[ids]
        else:
            out[keep] = (255, 255, 0)
    img = Image.fromarray(out)
    pen = ImageDraw.Draw(img)
    for rid, (x, y, _w, _h), label in regions:
        text = f"{rid} {label}".strip()
        pen.text((int(x) + 1, max(int(y) - 10, 0)), text, fill=_colour(rid))
    return np.asarray(img)
