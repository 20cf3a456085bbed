"""sensor_msgs Image / CompressedImage / label image <-> numpy, with validation first.

Every check happens on the message header fields *before* any pixel buffer is touched, so a
truncated message or an absurd size (10000x10000) is rejected with a clear reason instead of an
exception deep inside numpy or a multi-GB allocation. rosbags-image would need OpenCV, which is
not a dependency here; raw images are plain strided buffers, so numpy views do the job, and
compressed images go through Pillow (which reads the size from the header before decoding).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

# encoding -> (channels, dtype); the image encodings the node accepts for RGB input.
IMAGE_ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)),
    "bgra8": (4, np.dtype(np.uint8)),
}
# encoding -> dtype; label images (pixel value = instance id; ids <= 0 are background, so the
# negative values a signed 32SC1 image may hold are never objects: see rgpt_model.masks).
MASK_ENCODINGS: dict[str, np.dtype] = {
    "mono8": np.dtype(np.uint8),
    "mono16": np.dtype(np.uint16),
    "16UC1": np.dtype(np.uint16),
    "32SC1": np.dtype(np.int32),
}
DEFAULT_MAX_SIDE = 4096


class ConversionError(ValueError):
    """A message cannot be turned into an array; the text says why (it goes into the log)."""


@dataclass(frozen=True)
class SizeLimit:
    """Largest accepted image; bounds memory before any allocation."""

    max_width: int = DEFAULT_MAX_SIDE
    max_height: int = DEFAULT_MAX_SIDE

    def check(self, width: int, height: int, what: str) -> None:
        if width <= 0 or height <= 0:
            raise ConversionError(f"{what} is empty ({width}x{height})")
        if width > self.max_width or height > self.max_height:
            raise ConversionError(
                f"{what} is {width}x{height}, larger than the limit "
                f"{self.max_width}x{self.max_height} (parameters max_image_width/height)"
            )


def _raw_view(msg, channels: int, dtype: np.dtype, what: str) -> np.ndarray:
    """(H, W, C) view of a raw image buffer after checking step and length."""
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    row = width * channels * dtype.itemsize
    if step < row:
        raise ConversionError(
            f"{what} step {step} is smaller than width x channels x bytes = {row}"
        )
    data = msg.data
    size = len(data) * (data.itemsize if hasattr(data, "itemsize") else 1)
    if size < step * height:
        raise ConversionError(
            f"{what} is truncated: step x height = {step * height} bytes but data has {size}"
        )
    buf = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)
    buf = buf[:, :row]
    order = ">" if msg.is_bigendian else "<"
    if dtype.itemsize > 1:
        arr = np.ascontiguousarray(buf).view(dtype.newbyteorder(order))
        arr = arr.astype(dtype, copy=False)
    else:
        arr = buf
    return arr.reshape(height, width, channels)


def image_to_rgb(msg, limit: SizeLimit = SizeLimit()) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8) -> HxWx3 uint8 RGB (a copy)."""
    enc = str(msg.encoding)
    if enc not in IMAGE_ENCODINGS:
        raise ConversionError(
            f"unsupported image encoding {enc!r}; supported: {', '.join(IMAGE_ENCODINGS)}"
        )
    limit.check(int(msg.width), int(msg.height), "image")
    channels, dtype = IMAGE_ENCODINGS[enc]
    arr = _raw_view(msg, channels, dtype, "image")
    if enc == "rgb8":
        return np.ascontiguousarray(arr)
    if enc == "bgr8":
        return np.ascontiguousarray(arr[:, :, ::-1])
    if enc == "rgba8":
        return np.ascontiguousarray(arr[:, :, :3])
    if enc == "bgra8":
        return np.ascontiguousarray(arr[:, :, 2::-1])
    return np.repeat(arr, 3, axis=2)  # mono8


def compressed_to_rgb(msg, limit: SizeLimit = SizeLimit()) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png, ...) -> HxWx3 uint8 RGB."""
    from PIL import Image as PILImage

    data = bytes(msg.data)
    if not data:
        raise ConversionError("compressed image has no data")
    try:
        img = PILImage.open(io.BytesIO(data))
        limit.check(img.width, img.height, "compressed image")  # header only, no decode yet
        return np.ascontiguousarray(np.asarray(img.convert("RGB")))
    except ConversionError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input
        raise ConversionError(
            f"cannot decode compressed image (format {msg.format!r}): {exc}"
        ) from exc


def labels_from_msg(msg, limit: SizeLimit = SizeLimit()) -> np.ndarray:
    """Label image (mono8, mono16, 16UC1, 32SC1) -> HxW integer array (a copy; ids <= 0 are
    background)."""
    enc = str(msg.encoding)
    if enc not in MASK_ENCODINGS:
        raise ConversionError(
            f"unsupported mask encoding {enc!r}; a label image must be one of "
            f"{', '.join(MASK_ENCODINGS)} (pixel value = instance id, <= 0 = background)"
        )
    limit.check(int(msg.width), int(msg.height), "mask label image")
    arr = _raw_view(msg, 1, MASK_ENCODINGS[enc], "mask label image")
    return np.array(arr[:, :, 0], copy=True)


def match_mask_size(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a label image to (height, width) by nearest neighbour when the aspect ratio matches.

    Segmenters often run at a lower resolution than the camera; ids must stay ids, so only
    nearest-neighbour sampling is allowed, and a different aspect ratio is a wiring error.
    """
    mh, mw = labels.shape
    if (mh, mw) == (height, width):
        return labels
    if abs(mw / mh - width / height) > 0.01 * (width / height):
        raise ConversionError(
            f"mask size {mw}x{mh} and image size {width}x{height} have different aspect "
            "ratios; masks must be at the image's resolution or a scaled copy of it"
        )
    rows = np.minimum((np.arange(height) + 0.5) * mh / height, mh - 1).astype(np.intp)
    cols = np.minimum((np.arange(width) + 0.5) * mw / width, mw - 1).astype(np.intp)
    return labels[rows[:, None], cols[None, :]]


def rgb_to_image_msg(rgb: np.ndarray, header=None, encoding: str = "rgb8"):
    """HxWx3 uint8 RGB (or HxW mono8) -> sensor_msgs/Image; used for debug images and tests."""
    arr = np.ascontiguousarray(rgb)
    if encoding == "bgr8":
        arr = np.ascontiguousarray(arr[:, :, ::-1])
    elif encoding in ("rgba8", "bgra8"):
        alpha = np.full(arr.shape[:2] + (1,), 255, np.uint8)
        base = arr if encoding == "rgba8" else arr[:, :, ::-1]
        arr = np.ascontiguousarray(np.concatenate([base, alpha], axis=2))
    elif encoding == "mono8" and arr.ndim == 3:
        arr = np.ascontiguousarray(arr.mean(axis=2).astype(np.uint8))
    return _array_to_image_msg(arr, encoding, header)


def labels_to_image_msg(labels: np.ndarray, header=None, encoding: str = "mono16"):
    """HxW label array -> sensor_msgs/Image label image in the given encoding."""
    if encoding not in MASK_ENCODINGS:
        raise ConversionError(f"unsupported mask encoding {encoding!r}")
    arr = np.ascontiguousarray(labels.astype(MASK_ENCODINGS[encoding].newbyteorder("<")))
    return _array_to_image_msg(arr, encoding, header)


def _array_to_image_msg(arr: np.ndarray, encoding: str, header=None):
    """C-contiguous little-endian HxW[xC] array -> sensor_msgs/Image with tight rows."""
    from sensor_msgs.msg import Image

    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.strides[0])
    msg.data = arr.tobytes()
    return msg


def rgb_to_compressed_msg(rgb: np.ndarray, header=None, fmt: str = "png"):
    """HxWx3 uint8 RGB -> sensor_msgs/CompressedImage (png or jpeg)."""
    from PIL import Image as PILImage
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage()
    if header is not None:
        msg.header = header
    out = io.BytesIO()
    PILImage.fromarray(rgb).save(out, format="PNG" if fmt == "png" else "JPEG")
    msg.format = fmt
    msg.data = out.getvalue()
    return msg


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds (exact, for stamp matching)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def prompts_from_msg(msg) -> list:
    """regiongpt_ros/RegionPromptArray -> rgpt_model RegionPrompt list (validated).

    Ids must be positive and unique (they become the region ids); a box counts when its width
    and height are > 0; point z is the label (1 foreground, 0 background).
    """
    from rgpt_model.errors import RGPTError
    from rgpt_model.region_prompts import RegionPrompt, validate_prompts

    prompts = []
    for p in msg.prompts:
        box = None
        if p.bbox.width > 0 and p.bbox.height > 0:
            box = (float(p.bbox.x_offset), float(p.bbox.y_offset),
                   float(p.bbox.width), float(p.bbox.height))
        prompts.append(RegionPrompt(id=int(p.id), box=box,
                                    points=[(float(q.x), float(q.y)) for q in p.points],
                                    point_labels=[int(round(q.z)) for q in p.points],
                                    label=str(p.label)))
    try:
        validate_prompts(prompts)
    except RGPTError as exc:
        raise ConversionError(f"prompts rejected: {exc}") from exc
    return prompts


def region_description_msg(desc):
    """rgpt_model RegionDescription -> regiongpt_ros/RegionDescription."""
    from regiongpt_ros.msg import RegionDescription
    from sensor_msgs.msg import RegionOfInterest

    x, y, w, h = (int(v) for v in desc.bbox)
    return RegionDescription(
        id=int(desc.region_id), area=int(desc.area), label=str(desc.label),
        label_score=float(desc.label_score), caption=str(desc.caption),
        bbox=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h),
        reused=bool(desc.reused), age=int(desc.age))


def region_array_msg(header, descriptions, tasks, inference_time: float):
    """One frame's descriptions -> regiongpt_ros/RegionDescriptionArray (header copied)."""
    from regiongpt_ros.msg import RegionDescriptionArray

    return RegionDescriptionArray(
        header=header, inference_time=float(inference_time), tasks=list(tasks),
        regions=[region_description_msg(d) for d in descriptions])


def fill_refer_answer(out, answer) -> None:
    """Copy an rgpt_model ReferResult into a ReferResult message or a RegionQuery result."""
    out.matched_ids = [int(i) for i in answer.matched_ids]
    out.scores = [float(v) for v in answer.scores]
    if hasattr(out, "raw_answer"):
        out.raw_answer = answer.raw_answer
    else:
        out.answer = answer.raw_answer
