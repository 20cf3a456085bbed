"""Region mask utilities: label image <-> boolean stack, boxes -> masks, bbox/area, validation.

The ROS convention is a label image (pixel value = instance id); the model wants one boolean
mask per region. Validation lives here so every entry point raises the same errors.

One rule for ids, everywhere: **ids <= 0 are background**. A signed label image (32SC1, int32)
may hold negative values (some segmenters mark "ignore" or "unknown" that way); they are never
described as objects. A label image holds one id per pixel, so overlapping regions (boxes from a
detector, SAM masks) travel as a :class:`MaskStack` instead: one mask per region, explicit ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import EmptyMaskError, InvalidImageError, InvalidMaskError, UnknownRegionError

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


def validate_image(image) -> np.ndarray:
    """Return the image as a contiguous HxWx3 uint8 RGB array, or raise InvalidImageError.

    PIL images of any mode are converted to RGB. Arrays must already be uint8 RGB: silently
    rescaling floats or dropping alpha would hide caller bugs (BGR/float confusion).
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(
            f"image must be a numpy array (HxWx3 uint8 RGB) or a PIL image, got {type(image)!r}"
        )
    if image.dtype != np.uint8:
        raise InvalidImageError(
            f"image dtype is {image.dtype}, expected uint8 RGB in 0..255; convert with "
            "(img * 255).clip(0, 255).astype(np.uint8) if it is a float image in 0..1"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(
            f"image shape is {image.shape}, expected HxWx3 (RGB); drop alpha with img[..., :3] "
            "or stack a grayscale image to 3 channels"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidImageError(f"image has an empty side: shape {image.shape}")
    return np.ascontiguousarray(image)


@dataclass(frozen=True)
class MaskStack:
    """Boolean masks (N, H, W) with an instance id per mask; masks may overlap.

    Accepted wherever masks are (``to_mask_stack``, the predictor): unlike a label image, two
    regions that share pixels both keep them.
    """

    masks: np.ndarray
    ids: tuple[int, ...]

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks)
        if masks.ndim != 3:
            raise InvalidMaskError(f"a MaskStack holds masks NxHxW, got shape {masks.shape}")
        ids = tuple(int(i) for i in self.ids)
        if len(ids) != len(masks):
            raise InvalidMaskError(f"{len(masks)} masks but {len(ids)} ids; give one id per mask")
        bad = sorted({i for i in ids if i <= 0} | {i for i in ids if ids.count(i) > 1})
        if bad:
            raise InvalidMaskError(f"mask ids {bad} must be > 0 and unique (<= 0 is background)")
        object.__setattr__(self, "masks", masks.astype(bool, copy=False))
        object.__setattr__(self, "ids", ids)

    @classmethod
    def from_label_image(cls, label: np.ndarray) -> MaskStack:
        """Every id > 0 of a label image, in increasing order."""
        stack, ids = label_image_to_stack(label)
        return cls(stack, tuple(ids))

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> MaskStack:
        return cls(np.zeros((0, int(shape[0]), int(shape[1])), dtype=bool), ())

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the masks."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    def areas(self) -> list[int]:
        """Pixels per mask, in id order of the stack."""
        return [int(a) for a in self.masks.reshape(len(self.ids), -1).sum(axis=1)]

    def select(self, region_ids: Sequence[int]) -> MaskStack:
        """The masks of ``region_ids``, in that order (UnknownRegionError for an absent id)."""
        index = {rid: k for k, rid in enumerate(self.ids)}
        wanted = [int(i) for i in region_ids]
        missing = [i for i in wanted if i not in index]
        if missing:
            raise UnknownRegionError(
                f"region id(s) {missing} not among the masks (ids: {list(self.ids)}); pick ids "
                "from the mask input"
            )
        return MaskStack(self.masks[[index[i] for i in wanted]], tuple(wanted))

    def concat(self, other: MaskStack) -> MaskStack:
        """This stack followed by ``other`` (ids must stay unique)."""
        if self.shape != other.shape:
            raise InvalidMaskError(f"mask sizes {self.shape} and {other.shape} differ")
        return MaskStack(np.concatenate([self.masks, other.masks]), self.ids + other.ids)

    def to_label_image(self) -> np.ndarray:
        """A label image for display (later masks win where masks overlap)."""
        return stack_to_label_image(self.masks, self.ids)


def label_image_to_stack(
    label: np.ndarray, region_ids: Sequence[int] | None = None
) -> tuple[np.ndarray, list[int]]:
    """Split a label image into a boolean stack (N, H, W) and the instance ids it holds.

    Without ``region_ids`` every id > 0 is used, in increasing order (ids <= 0 are
    background). A requested id with no pixel, or <= 0, raises UnknownRegionError.
    """
    if label.ndim != 2:
        raise InvalidMaskError(f"label image must be 2-D (HxW), got shape {label.shape}")
    if not (np.issubdtype(label.dtype, np.integer) or label.dtype == np.bool_):
        raise InvalidMaskError(
            f"label image must have an integer dtype (instance ids), got {label.dtype}"
        )
    present = [int(v) for v in np.unique(label) if v > 0]
    if region_ids is None:
        ids = present
    else:
        ids = [int(v) for v in region_ids]
        missing = [i for i in ids if i not in set(present)]
        if missing:
            raise UnknownRegionError(
                f"region id(s) {missing} not present in the label image (present ids: "
                f"{present}; ids <= 0 are background); pick ids from the mask input"
            )
    if not ids:
        return np.zeros((0,) + label.shape, dtype=bool), []
    stack = label[None, :, :] == np.asarray(ids, dtype=label.dtype)[:, None, None]
    return stack, ids


def stack_to_label_image(stack: np.ndarray, ids: Sequence[int] | None = None) -> np.ndarray:
    """Merge a boolean stack into a uint16/int32 label image (later masks win on overlap)."""
    stack = np.asarray(stack, dtype=bool)
    ids = list(range(1, len(stack) + 1)) if ids is None else [int(i) for i in ids]
    dtype = np.uint16 if max(ids, default=0) < 65536 else np.int32
    label = np.zeros(stack.shape[1:], dtype=dtype)
    for i, m in zip(ids, stack, strict=True):
        label[m] = i
    return label


def to_mask_stack(
    masks,
    image_shape: tuple[int, int] | None = None,
    region_ids: Sequence[int] | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Normalise predictor mask input to (bool stack (N, H, W), region ids).

    ``masks`` is a :class:`MaskStack` (explicit ids, overlaps kept), a label image HxW
    (integer ids, <= 0 = background) or a boolean/0-1 stack NxHxW (ids 1..N). ``image_shape``
    (H, W) is checked. Every selected mask must be non-empty.
    """
    if isinstance(masks, MaskStack):
        chosen = masks if region_ids is None else masks.select(region_ids)
        stack, ids = chosen.masks, list(chosen.ids)
        _check_nonempty(stack, ids)
        _check_size(stack, image_shape)
        return stack, ids
    if hasattr(masks, "mode") and hasattr(masks, "size") and not isinstance(masks, np.ndarray):
        masks = np.asarray(masks)  # PIL label image
    if not isinstance(masks, np.ndarray):
        try:
            masks = np.asarray(masks)
        except Exception as exc:  # noqa: BLE001 - report any conversion failure the same way
            raise InvalidMaskError(f"masks must be a numpy array, got {type(masks)!r}") from exc
    if masks.ndim == 2:
        stack, ids = label_image_to_stack(masks, region_ids)
    elif masks.ndim == 3:
        if masks.dtype != np.bool_:
            numeric = np.issubdtype(masks.dtype, np.integer) or np.issubdtype(
                masks.dtype, np.floating
            )
            if not numeric:
                raise InvalidMaskError(f"mask stack dtype {masks.dtype} is not boolean")
            uniq = np.unique(masks)
            if not np.all(np.isin(uniq, (0, 1))):
                raise InvalidMaskError(
                    "a 3-D mask input is read as a boolean stack NxHxW and must hold only 0/1; "
                    "pass a 2-D label image for instance ids"
                )
        stack = masks.astype(bool)
        all_ids = list(range(1, len(stack) + 1))
        if region_ids is None:
            ids = all_ids
        else:
            ids = [int(i) for i in region_ids]
            bad = [i for i in ids if i < 1 or i > len(stack)]
            if bad:
                raise UnknownRegionError(
                    f"region id(s) {bad} out of range for a stack of {len(stack)} masks "
                    "(ids of a stack are 1..N)"
                )
            stack = stack[[i - 1 for i in ids]]
        _check_nonempty(stack, ids)
    else:
        raise InvalidMaskError(
            f"masks must be a label image HxW, a boolean stack NxHxW or a MaskStack, got shape "
            f"{masks.shape}"
        )
    _check_size(stack, image_shape)
    return stack, ids


def _check_nonempty(stack: np.ndarray, ids: Sequence[int]) -> None:
    empty = [i for i, m in zip(ids, stack, strict=True) if not m.any()]
    if empty:
        raise EmptyMaskError(
            f"mask(s) for region id(s) {empty} are all zero; remove them or pass region_ids "
            "that select non-empty masks"
        )


def _check_size(stack: np.ndarray, image_shape: tuple[int, int] | None) -> None:
    if image_shape is not None and tuple(stack.shape[1:]) != tuple(image_shape[:2]):
        raise InvalidMaskError(
            f"mask size {tuple(stack.shape[1:])} (HxW) differs from image size "
            f"{tuple(image_shape[:2])}; masks must be at the image's resolution"
        )


def boxes_to_masks(boxes: Sequence[Sequence[float]], image_shape: tuple[int, int]) -> np.ndarray:
    """Rasterise (x, y, w, h) boxes into rectangular boolean masks (N, H, W).

    A box that covers no full pixel still gets the pixel it starts in, so it never yields an
    empty mask; a box entirely outside the image raises InvalidMaskError.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    out = np.zeros((len(boxes), h, w), dtype=bool)
    for k, box in enumerate(boxes):
        if len(box) != 4:
            raise InvalidMaskError(f"box {k} must be (x, y, w, h), got {tuple(box)}")
        x, y, bw, bh = (float(v) for v in box)
        if bw <= 0 or bh <= 0:
            raise InvalidMaskError(f"box {k} {tuple(box)} has non-positive width or height")
        x0, y0 = int(np.floor(max(x, 0))), int(np.floor(max(y, 0)))
        x1, y1 = int(np.ceil(min(x + bw, w))), int(np.ceil(min(y + bh, h)))
        if x0 >= w or y0 >= h or x1 <= 0 or y1 <= 0:
            raise InvalidMaskError(f"box {k} {tuple(box)} lies outside the {w}x{h} image")
        out[k, y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)] = True
    return out


def parse_boxes(text: str) -> list[Box]:
    """Parse ``"x,y,w,h;x,y,w,h"`` (CLI syntax) into integer boxes."""
    boxes: list[Box] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        vals = [v for v in part.replace(" ", ",").split(",") if v]
        if len(vals) != 4:
            raise InvalidMaskError(f"box {part!r} must be 'x,y,w,h'")
        try:
            x, y, w, h = (int(round(float(v))) for v in vals)
        except ValueError as exc:
            raise InvalidMaskError(f"box {part!r} must hold four numbers") from exc
        boxes.append((x, y, w, h))
    return boxes


def mask_bbox(mask: np.ndarray) -> Box:
    """Tight (x, y, w, h) box of a boolean mask; (0, 0, 0, 0) for an empty mask."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return (0, 0, 0, 0)
    return (int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1))


def mask_area(mask: np.ndarray) -> int:
    """Number of foreground pixels."""
    return int(np.count_nonzero(mask))
