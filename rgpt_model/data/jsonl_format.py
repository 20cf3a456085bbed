"""JSONL region-instruction format: one training/evaluation record per line.

Record (see docs/DATA_FORMAT.md for the full description)::

    {"id": "train-000001-cls-2",
     "image": "images/train/000001.png",            # relative to the JSONL file, or absolute
     "masks": {"type": "label_png", "path": "labels/train/000001.png"},
     "region_ids": [2],                             # <region1>.. <regionN> in this order
     "task": "classify",
     "conversations": [{"from": "human", "value": "... <region1> ..."},
                       {"from": "gpt", "value": "circle"}],
     "meta": {...}}                                  # optional, free-form

Mask sources: ``label_png`` (integer PNG, pixel = id), ``rle`` (COCO RLE list, optional
``ids``), ``boxes`` ([x, y, w, h] list, optional ``ids``); without ``ids`` the k-th mask has
id k+1. Validation raises :class:`JsonlFormatError` naming the file and line.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rgpt_model.errors import RGPTError

log = logging.getLogger(__name__)

TASKS: tuple[str, ...] = (
    "classify",
    "caption_brief",
    "caption_detail",
    "refer",
    "short_answer",
    "free",
)
MASK_TYPES: tuple[str, ...] = ("label_png", "rle", "boxes")
_REGION_RE = re.compile(r"<region(\d*)>")


class JsonlFormatError(RGPTError, ValueError):
    """A record breaks the JSONL region-instruction format."""


def _where(path: str | Path | None, line: int | None) -> str:
    if path is None and line is None:
        return "record"
    return f"{path or '<records>'}:{line}" if line is not None else str(path)


def _ids_of(masks: dict) -> list[int] | None:
    """Ids carried by an rle/boxes mask source (None for label_png: ids live in the PNG)."""
    if masks["type"] == "label_png":
        return None
    items = masks["rles"] if masks["type"] == "rle" else masks["boxes"]
    ids = masks.get("ids")
    return list(range(1, len(items) + 1)) if ids is None else list(ids)


def validate_record(rec: Any, *, path: str | Path | None = None, line: int | None = None) -> dict:
    """Check one record; returns it unchanged or raises JsonlFormatError saying what is wrong."""
    where = _where(path, line)

    def fail(msg: str) -> JsonlFormatError:
        return JsonlFormatError(f"{where}: {msg}")

    if not isinstance(rec, dict):
        raise fail(f"record must be a JSON object, got {type(rec).__name__}")
    for key in ("id", "image", "masks", "region_ids", "task", "conversations"):
        if key not in rec:
            raise fail(f"missing key {key!r}")
    if not isinstance(rec["id"], str) or not rec["id"]:
        raise fail("'id' must be a non-empty string")
    if not isinstance(rec["image"], str) or not rec["image"]:
        raise fail("'image' must be a non-empty path string")
    if rec["task"] not in TASKS:
        raise fail(f"unknown task {rec['task']!r}; expected one of {TASKS}")
    masks = rec["masks"]
    if not isinstance(masks, dict) or masks.get("type") not in MASK_TYPES:
        raise fail(f"'masks' must be an object with 'type' in {MASK_TYPES}")
    if masks["type"] == "label_png":
        if not isinstance(masks.get("path"), str) or not masks["path"]:
            raise fail("label_png masks need a 'path'")
    elif masks["type"] == "rle":
        rles = masks.get("rles")
        if not isinstance(rles, list) or not rles:
            raise fail("rle masks need a non-empty 'rles' list")
        for k, r in enumerate(rles):
            if not isinstance(r, dict) or "counts" not in r or "size" not in r:
                raise fail(f"rles[{k}] must be a COCO RLE with 'counts' and 'size'")
    else:
        boxes = masks.get("boxes")
        if not isinstance(boxes, list) or not boxes:
            raise fail("boxes masks need a non-empty 'boxes' list")
        for k, b in enumerate(boxes):
            if (
                not isinstance(b, list | tuple)
                or len(b) != 4
                or not all(isinstance(v, int | float) for v in b)
                or b[2] <= 0
                or b[3] <= 0
            ):
                raise fail(f"boxes[{k}] must be [x, y, w, h] with w, h > 0, got {b!r}")
    ids = _ids_of(masks)
    if ids is not None:
        n_items = len(masks["rles"] if masks["type"] == "rle" else masks["boxes"])
        if len(ids) != n_items or len(set(ids)) != len(ids):
            raise fail(f"masks 'ids' must be {n_items} distinct integers")
    rids = rec["region_ids"]
    if not isinstance(rids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in rids
    ):
        raise fail("'region_ids' must be a list of positive integers")
    if len(set(rids)) != len(rids):
        raise fail(f"'region_ids' has duplicates: {rids}")
    if ids is not None and (missing := [i for i in rids if i not in ids]):
        raise fail(f"region_ids {missing} not among the mask ids {ids}")
    conv = rec["conversations"]
    if not isinstance(conv, list) or len(conv) < 2 or len(conv) % 2:
        raise fail("'conversations' must be a non-empty list of human/gpt pairs")
    n_plain = 0
    for k, turn in enumerate(conv):
        want = "human" if k % 2 == 0 else "gpt"
        if not isinstance(turn, dict) or turn.get("from") != want:
            raise fail(f"conversations[{k}] must come from {want!r}")
        if not isinstance(turn.get("value"), str):
            raise fail(f"conversations[{k}] needs a string 'value'")
        for m in _REGION_RE.finditer(turn["value"]):
            if m.group(1):
                n = int(m.group(1))
                if not 1 <= n <= len(rids):
                    raise fail(
                        f"conversations[{k}] uses <region{n}> but only {len(rids)} "
                        f"region_ids are given"
                    )
            else:
                n_plain += 1
    if n_plain > len(rids):
        raise fail(f"{n_plain} <region> placeholders but only {len(rids)} region_ids")
    return rec


def read_jsonl(path: str | Path, validate: bool = True) -> Iterator[dict]:
    """Yield the records of ``path`` (blank lines skipped), validating each one."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for lineno, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as exc:
                raise JsonlFormatError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
            yield validate_record(rec, path=path, line=lineno) if validate else rec


def load_jsonl(path: str | Path, validate: bool = True) -> list[dict]:
    """All records of ``path`` as a list."""
    return list(read_jsonl(path, validate))


def write_jsonl(path: str | Path, records: Iterable[dict], validate: bool = True) -> int:
    """Write ``records`` (one compact JSON object per line); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for n, rec in enumerate(records, start=1):
            if validate:
                validate_record(rec, path=path, line=n)
            f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
    log.info("wrote %d records to %s", n, path)
    return n


def resolve_path(p: str, root: str | Path | None) -> Path:
    """Absolute paths stay; relative ones are taken from ``root`` (the JSONL folder)."""
    q = Path(p)
    return q if q.is_absolute() or root is None else Path(root) / q


def read_label_png(path: str | Path) -> np.ndarray:
    """Integer label image (8- or 16-bit PNG) as an HxW integer array."""
    with Image.open(path) as im:
        arr = np.array(im)
    if arr.ndim != 2:
        raise JsonlFormatError(f"{path}: label PNG must be single-channel, got shape {arr.shape}")
    return arr.astype(np.int64) if arr.dtype.kind == "i" else arr


def write_label_png(path: str | Path, labels: np.ndarray) -> None:
    """Save a label image as a 16-bit PNG (ids up to 65535)."""
    if labels.ndim != 2 or labels.max(initial=0) > 65535 or labels.min(initial=0) < 0:
        raise ValueError("labels must be HxW with ids in 0..65535")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint16)).save(path)


def _decode_rles(rles: list[dict]) -> np.ndarray:
    from pycocotools import mask as mask_utils

    fixed = []
    for r in rles:
        r = dict(r)
        if isinstance(r["counts"], list):  # uncompressed RLE
            r = mask_utils.frPyObjects(r, *r["size"])
        elif isinstance(r["counts"], str):
            r["counts"] = r["counts"].encode("ascii")
        fixed.append(r)
    with warnings.catch_warnings():  # pycocotools vs numpy 2 copy-keyword notice
        warnings.simplefilter("ignore", DeprecationWarning)
        dec = mask_utils.decode(fixed)  # H x W x N
    return np.moveaxis(dec, -1, 0).astype(bool)


def load_masks(
    rec: dict, image_shape: tuple[int, int], root: str | Path | None = None
) -> np.ndarray:
    """Boolean stack (len(region_ids), H, W) in region_ids order."""
    masks = rec["masks"]
    h, w = int(image_shape[0]), int(image_shape[1])
    rids = rec["region_ids"]
    if masks["type"] == "label_png":
        labels = read_label_png(resolve_path(masks["path"], root))
        if labels.shape != (h, w):
            raise JsonlFormatError(
                f"record {rec['id']}: label image {labels.shape} does not match image {(h, w)}"
            )
        stack = np.stack([labels == i for i in rids]) if rids else np.zeros((0, h, w), bool)
    else:
        ids = _ids_of(masks)
        assert ids is not None
        index = [ids.index(i) for i in rids]
        if masks["type"] == "rle":
            sel = [masks["rles"][k] for k in index]
            stack = _decode_rles(sel) if sel else np.zeros((0, h, w), bool)
        else:
            from rgpt_model.masks import boxes_to_masks

            stack = boxes_to_masks([masks["boxes"][k] for k in index], (h, w))
        if stack.shape[1:] != (h, w):
            raise JsonlFormatError(
                f"record {rec['id']}: masks {stack.shape[1:]} do not match image {(h, w)}"
            )
    empty = [i for i, m in zip(rids, stack, strict=True) if not m.any()]
    if empty:
        raise JsonlFormatError(f"record {rec['id']}: region ids {empty} have no pixels")
    return stack


def load_record(rec: dict, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image (HxWx3 uint8 RGB) and masks (R x H x W bool, region_ids order) of a record."""
    with Image.open(resolve_path(rec["image"], root)) as im:
        image = np.array(im.convert("RGB"))
    return image, load_masks(rec, image.shape[:2], root)


def make_record(
    rec_id: str,
    image: str,
    masks: dict,
    region_ids: list[int],
    task: str,
    human: str,
    answer: str,
    meta: dict | None = None,
) -> dict:
    """Build and validate a single-turn record."""
    rec = {
        "id": rec_id,
        "image": image,
        "masks": masks,
        "region_ids": list(region_ids),
        "task": task,
        "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": answer}],
    }
    if meta:
        rec["meta"] = meta
    return validate_record(rec)
