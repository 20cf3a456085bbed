"""Region masks as real mask sources give them: boxes, and coarse outlines from segmenters.

Exact synthetic masks let a model read the class from the outline alone (issue 20: 100 % right
on a flat grey image). Training on, and evaluating with, boxes and coarse masks (dilated,
eroded, jittered outlines, convex hulls, moment-matched ellipses) tells whether the answer comes
from the pixels under the mask instead. Every function takes and returns a boolean stack
(N, H, W) and never returns an empty mask: a variant that would vanish keeps a non-empty core.
Sizes default to fractions of each mask's equivalent diameter, so a variant means the same at
128x128 and at 640x480.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage
from skimage.draw import ellipse as draw_ellipse
from skimage.measure import regionprops
from skimage.morphology import convex_hull_image

from rgpt_model.errors import EmptyMaskError, InvalidMaskError
from rgpt_model.masks import boxes_to_masks, mask_bbox

COARSE_KINDS: tuple[str, ...] = ("dilate", "erode", "jitter", "hull", "ellipse")
VARIANT_GROUPS: tuple[str, ...] = ("exact", "box", "coarse")

# Default ranges, as fractions of the mask's equivalent diameter sqrt(4 * area / pi).
DEFAULT_DILATE_SCALE = (0.04, 0.15)
DEFAULT_ERODE_SCALE = (0.04, 0.12)
DEFAULT_JITTER_SCALE = (0.04, 0.10)  # amplitude of the outline displacement
DEFAULT_JITTER_SMOOTHNESS = 0.15  # correlation length of the displacement, same unit


def _check_stack(stack: np.ndarray) -> np.ndarray:
    stack = np.asarray(stack)
    if stack.ndim != 3 or stack.dtype != np.bool_:
        raise InvalidMaskError(
            f"mask variants need a boolean stack (N, H, W), got {stack.dtype} {stack.shape}; "
            "convert a label image with rgpt_model.masks.label_image_to_stack"
        )
    empty = [k for k, m in enumerate(stack) if not m.any()]
    if empty:
        raise EmptyMaskError(f"mask(s) at stack index {empty} are empty; drop them first")
    return stack


def _diameter(mask: np.ndarray) -> float:
    return float(np.sqrt(4.0 * np.count_nonzero(mask) / np.pi))


def _pixels(mask: np.ndarray, value: float | None, scale: float | tuple[float, float],
            rng: np.random.Generator) -> float:
    """An explicit size in pixels, or a fraction of the diameter drawn from ``scale``."""
    if value is not None:
        return float(value)
    lo, hi = (scale, scale) if np.isscalar(scale) else scale
    return float(rng.uniform(lo, hi)) * _diameter(mask)


def _core(mask: np.ndarray, depth: np.ndarray | None = None) -> np.ndarray:
    """The innermost pixels of ``mask`` (largest distance to the outline): never empty."""
    depth = ndimage.distance_transform_edt(mask) if depth is None else depth
    return mask & (depth >= depth.max())


def box_masks(stack: np.ndarray) -> np.ndarray:
    """Each mask replaced by its tight bounding box (what a detector without SAM gives)."""
    stack = _check_stack(stack)
    if not len(stack):
        return stack.copy()
    return boxes_to_masks([mask_bbox(m) for m in stack], stack.shape[1:])


def _dilate(mask: np.ndarray, rng: np.random.Generator, radius: float | None = None,
            scale: float | tuple[float, float] = DEFAULT_DILATE_SCALE) -> np.ndarray:
    r = max(_pixels(mask, radius, scale, rng), 1.0)
    return ndimage.distance_transform_edt(~mask) <= r


def _erode(mask: np.ndarray, rng: np.random.Generator, radius: float | None = None,
           scale: float | tuple[float, float] = DEFAULT_ERODE_SCALE) -> np.ndarray:
    r = max(_pixels(mask, radius, scale, rng), 1.0)
    depth = ndimage.distance_transform_edt(mask)
    out = depth > r
    return out if out.any() else _core(mask, depth)


def _jitter(mask: np.ndarray, rng: np.random.Generator, amplitude: float | None = None,
            scale: float | tuple[float, float] = DEFAULT_JITTER_SCALE,
            smoothness: float = DEFAULT_JITTER_SMOOTHNESS) -> np.ndarray:
    """Move the outline in and out by a smooth random field of at most ``amplitude`` px."""
    amp = max(_pixels(mask, amplitude, scale, rng), 1.0)
    sigma = max(smoothness * _diameter(mask), 1.0)
    field = ndimage.gaussian_filter(rng.standard_normal(mask.shape), sigma)
    # Signed distance to the outline, +-0.5 on the pixels either side of it.
    signed = ndimage.distance_transform_edt(mask) - ndimage.distance_transform_edt(~mask)
    signed -= 0.5 * np.sign(signed)
    band = np.abs(signed) <= amp + 0.5  # only the field near the outline matters
    field *= amp / max(float(np.abs(field[band]).max()), 1e-12)
    out = signed + field > 0
    return out if out.any() else _core(mask)


def _hull(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return convex_hull_image(mask) | mask


def _ellipse(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ellipse with the mask's centroid and second moments (a blob-like segmenter)."""
    props = regionprops(mask.astype(np.uint8))[0]
    cy, cx = props.centroid
    a = max(props.axis_major_length / 2.0, 1.0)
    b = max(props.axis_minor_length / 2.0, 1.0)
    # regionprops' orientation (row axis to major axis) is draw.ellipse's rotation of its
    # row radius: both count the same way, checked on diagonal bars (IoU 0.83 vs 0.14).
    rr, cc = draw_ellipse(cy, cx, a, b, shape=mask.shape, rotation=props.orientation)
    out = np.zeros_like(mask)
    out[rr, cc] = True
    return out if out.any() else _core(mask)


_COARSE = {"dilate": _dilate, "erode": _erode, "jitter": _jitter, "hull": _hull,
           "ellipse": _ellipse}


def coarse_masks(stack: np.ndarray, kind: str, rng: np.random.Generator,
                 **params) -> np.ndarray:
    """Each mask made coarse the way ``kind`` says, with its own random draw.

    Parameters by kind (pixels override the fraction-of-diameter ranges): dilate/erode
    ``radius`` or ``scale=(lo, hi)``; jitter ``amplitude`` or ``scale``, and ``smoothness``;
    hull and ellipse take none.
    """
    stack = _check_stack(stack)
    if kind not in _COARSE:
        raise ValueError(f"unknown coarse mask kind {kind!r}; expected one of {COARSE_KINDS}")
    fn = _COARSE[kind]
    out = np.zeros_like(stack)
    for k, mask in enumerate(stack):
        out[k] = fn(mask, rng, **params)
    return out


def random_mask_variant(stack: np.ndarray, rng: np.random.Generator,
                        weights: Mapping[str, float] | None = None) -> tuple[np.ndarray, str]:
    """The exact masks, their boxes, or a random coarse kind, drawn by ``weights``.

    ``weights`` maps "exact", "box" and "coarse" to relative odds (missing keys are 0; the
    default is equal odds). Returns the stack and the kind used: "exact", "box" or one of
    ``COARSE_KINDS``. One kind per call, so all regions of a frame look alike, as from one
    mask source.
    """
    w = dict.fromkeys(VARIANT_GROUPS, 1.0) if weights is None else dict(weights)
    unknown = set(w) - set(VARIANT_GROUPS)
    if unknown:
        raise ValueError(f"unknown mask variant group(s) {sorted(unknown)}; "
                         f"expected keys among {VARIANT_GROUPS}")
    odds = np.asarray([max(float(w.get(g, 0.0)), 0.0) for g in VARIANT_GROUPS])
    if odds.sum() <= 0:
        raise ValueError(f"mask variant weights {w} give no group a positive weight")
    group = VARIANT_GROUPS[int(rng.choice(len(odds), p=odds / odds.sum()))]
    stack = _check_stack(stack)
    if group == "exact":
        return stack.copy(), "exact"
    if group == "box":
        return box_masks(stack), "box"
    kind = COARSE_KINDS[int(rng.integers(len(COARSE_KINDS)))]
    return coarse_masks(stack, kind, rng), kind
