"""COCO-style instance annotations -> JSONL region records (classification, region captions).

The same reader takes LVIS v1 (``lvis_v1_train.json``: images named by ``coco_url``, no
``iscrowd``, names such as ``aerosol_can``) and V3Det (COCO layout, boxes only).

Masks are stored as compressed COCO RLE (polygons, uncompressed RLE and bbox-only annotations
are converted with pycocotools), keyed by annotation id, so a record is self-contained.
Region captions are taken from an annotation's ``caption`` (string) or ``captions`` (list)
field when present (Visual Genome / RefCOCOg style region descriptions).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rgpt_model.data import templates
from rgpt_model.data.jsonl_format import make_record
from rgpt_model.prompts import COCO80

log = logging.getLogger(__name__)


def load_coco(annotations: str | Path | dict) -> dict:
    """COCO annotation dict from a path or an already loaded dict."""
    if isinstance(annotations, dict):
        return annotations
    with open(annotations, encoding="utf-8") as f:
        return json.load(f)


def ann_to_rle(ann: dict, height: int, width: int) -> dict:
    """Compressed RLE (``counts`` as str, JSON-ready) of an annotation's segmentation."""
    from pycocotools import mask as mask_utils

    segm = ann.get("segmentation")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if not segm:  # no mask: use the box
            x, y, w, h = ann["bbox"]
            rle = mask_utils.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], height, width)
            rle = mask_utils.merge(rle)
        elif isinstance(segm, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
        elif isinstance(segm.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(segm, height, width)
        else:
            rle = dict(segm)
    counts = rle["counts"]
    return {
        "size": [int(height), int(width)],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def category_names(coco: dict) -> dict[int, str]:
    """Category id -> name, underscores read as spaces (LVIS writes ``aerosol_can``)."""
    return {int(c["id"]): c["name"].replace("_", " ") for c in coco.get("categories", [])}


def class_names(coco: dict) -> list[str]:
    """Category names in id order (the class axis used by mAP evaluation)."""
    names = category_names(coco)
    return [names[k] for k in sorted(names)]


def index_annotations(
    coco: dict, include_crowd: bool = False, min_area: float = 1.0
) -> dict[int, list[dict]]:
    """Image id -> usable annotations (crowd and tiny ones dropped by default)."""
    by_image: dict[int, list[dict]] = defaultdict(list)
    for ann in coco.get("annotations", []):
        if ann.get("iscrowd", 0) and not include_crowd:
            continue
        if float(ann.get("area", min_area)) < min_area:
            continue
        by_image[int(ann["image_id"])].append(ann)
    return by_image


def image_path(img: dict, image_root: str | Path) -> str:
    """Path of an image entry under ``image_root`` (kept relative when the root is).

    LVIS entries have no ``file_name``: their ``coco_url``'s last two parts
    (``train2017/000000391895.jpg``) are taken, under the COCO root.
    """
    name = img.get("file_name") or "/".join(img["coco_url"].rstrip("/").split("/")[-2:])
    return (Path(image_root) / name).as_posix() if str(image_root) else name


def _captions(ann: dict) -> list[str]:
    caps: list[Any] = []
    if isinstance(ann.get("caption"), str):
        caps.append(ann["caption"])
    if isinstance(ann.get("captions"), list):
        caps += [c for c in ann["captions"] if isinstance(c, str)]
    return [c.strip() for c in caps if c.strip()]


def coco_to_records(
    annotations: str | Path | dict,
    image_root: str | Path = "",
    vocabulary_name: str | None = None,
    tasks: Sequence[str] = ("classify", "caption_detail"),
    include_crowd: bool = False,
    min_area: float = 1.0,
    progress: bool = False,
) -> list[dict]:
    """One classification record per annotation, plus caption records where captions exist.

    The classification prompt uses the COCO-80 wording when the categories are COCO's 80,
    else ``vocabulary_name`` ("LVIS" -> "... using LVIS category names.") or, without one,
    lists the dataset's category names.
    """
    coco = load_coco(annotations)
    names = category_names(coco)
    vocab = class_names(coco)
    if set(vocab) == set(COCO80) and vocabulary_name is None:
        cls_prompt = templates.classify_prompt(1)
    else:
        cls_prompt = templates.classify_prompt(1, vocabulary=vocab, vocabulary_name=vocabulary_name)
    by_image = index_annotations(coco, include_crowd, min_area)
    out: list[dict] = []
    images = sorted(coco.get("images", []), key=lambda im: int(im["id"]))
    for img in tqdm(images, desc="coco", disable=not progress, unit="image"):
        h, w = int(img["height"]), int(img["width"])
        path = image_path(img, image_root)
        for ann in sorted(by_image.get(int(img["id"]), []), key=lambda a: int(a["id"])):
            aid = int(ann["id"])
            masks = {"type": "rle", "rles": [ann_to_rle(ann, h, w)], "ids": [aid]}
            meta = {
                "image_id": int(img["id"]),
                "ann_id": aid,
                "category_id": int(ann["category_id"]),
                "bbox": [float(v) for v in ann.get("bbox", [])],
            }
            if "classify" in tasks:
                out.append(
                    make_record(
                        f"coco-{aid}-cls",
                        path,
                        masks,
                        [aid],
                        "classify",
                        cls_prompt,
                        names[int(ann["category_id"])],
                        meta,
                    )
                )
            if "caption_detail" in tasks:
                for k, cap in enumerate(_captions(ann)):
                    out.append(
                        make_record(
                            f"coco-{aid}-cap{k}",
                            path,
                            masks,
                            [aid],
                            "caption_detail",
                            templates.detail_caption_prompt(1),
                            cap,
                            meta,
                        )
                    )
    log.info("coco: %d records from %d images", len(out), len(images))
    return out
