"""Brief and detailed captions of synthetic regions (position words, neighbours, occluders)."""

from __future__ import annotations

import math

import numpy as np

from rgpt_model.data.scene import Region


def position_words(cx: float, cy: float, width: int, height: int) -> str:
    """Coarse 3x3 position: "top left", "left", "center", "bottom" ..."""
    col = "left" if cx < width / 3 else ("right" if cx > 2 * width / 3 else "")
    row = "top" if cy < height / 3 else ("bottom" if cy > 2 * height / 3 else "")
    words = " ".join(w for w in (row, col) if w)
    return words or "center"


def position_phrase(position: str) -> str:
    """Turn position words into a phrase: "in the top left of the image"."""
    if position == "center":
        return "in the center of the image"
    if position in ("left", "right"):
        return f"on the {position} of the image"
    if position in ("top", "bottom"):
        return f"at the {position} of the image"
    return f"in the {position} of the image"


def relation_words(a: Region, b: Region) -> str:
    """Dominant-axis relation of ``a`` to ``b``: "to the left of", "above" ..."""
    dx = a.centroid[0] - b.centroid[0]
    dy = a.centroid[1] - b.centroid[1]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def brief_caption(r: Region) -> str:
    """ "<size> <colour> <shape>", the brief caption the model must produce."""
    return f"{r.size} {r.colour} {r.shape}"


def nearest_neighbour(r: Region, regions: list[Region]) -> Region | None:
    """Closest other region by centroid distance (ties broken by id)."""
    best, best_d = None, math.inf
    for o in sorted(regions, key=lambda x: x.id):
        if o.id == r.id:
            continue
        d = math.dist(r.centroid, o.centroid)
        if d < best_d:
            best, best_d = o, d
    return best


def main_occluder(
    r: Region, regions: list[Region], full_masks: dict[int, np.ndarray], labels: np.ndarray
) -> Region | None:
    """The region painted over most of ``r``'s hidden pixels, or None if barely hidden."""
    if r.visible_fraction > 0.92:
        return None
    hidden = full_masks[r.id] & (labels != r.id)
    if not hidden.any():
        return None
    ids, counts = np.unique(labels[hidden], return_counts=True)
    keep = ids != 0
    if not keep.any():
        return None
    top = int(ids[keep][np.argmax(counts[keep])])
    return next(o for o in regions if o.id == top)


def detail_caption(
    r: Region, regions: list[Region], names: dict[int, str], occluder: Region | None
) -> str:
    """One sentence: object, position in the image, nearest neighbour and occluder.

    ``names`` maps region id -> the shortest unambiguous noun phrase without article.
    """
    text = f"a {brief_caption(r)} {position_phrase(r.position)}"
    nb = nearest_neighbour(r, regions)
    if nb is not None:
        text += f", {relation_words(r, nb)} the {names[nb.id]}"
    if occluder is not None:
        text += f", partly covered by the {names[occluder.id]}"
    return text + "."
