"""Visual Genome region descriptions -> JSONL region-caption records (box masks).

Reads the original files of VG v1.2: ``region_descriptions.json`` (a list with one entry per
image, ``{"id": image_id, "regions": [{"region_id", "image_id", "phrase", "x", "y", "width",
"height"}, ...]}``) and ``image_data.json`` (``[{"image_id", "url", "width", "height",
"coco_id", "flickr_id"}, ...]``). Images lie in ``VG_100K/`` and ``VG_100K_2/``; the ``url``
names which (``.../rak248/VG_100K_2/1.jpg``). VG regions are boxes, so each record's mask is
its box; the phrases are short, so the task is ``caption_brief`` (RGPT trains VG region
captions and reports METEOR/CIDEr on it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from rgpt_model.data import templates
from rgpt_model.data.jsonl_format import make_record

log = logging.getLogger(__name__)

IMAGE_FOLDERS = ("VG_100K", "VG_100K_2")


def _load(source: str | Path | list) -> list:
    if isinstance(source, list):
        return source
    with open(source, encoding="utf-8") as f:
        return json.load(f)


def image_relpath(entry: dict) -> str:
    """``VG_100K[_2]/<id>.jpg`` from an image_data entry (its url's last two parts)."""
    url = entry.get("url") or ""
    parts = url.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] in IMAGE_FOLDERS:
        return f"{parts[-2]}/{parts[-1]}"
    return f"{IMAGE_FOLDERS[0]}/{int(entry['image_id'])}.jpg"


def clip_box(region: dict, width: int, height: int) -> list[int] | None:
    """[x, y, w, h] of a region clipped to the image (VG boxes may overhang), or None if
    nothing of it is left."""
    x0, y0 = max(int(region["x"]), 0), max(int(region["y"]), 0)
    x1 = min(int(region["x"]) + int(region["width"]), width)
    y1 = min(int(region["y"]) + int(region["height"]), height)
    if x1 <= x0 or y1 <= y0:
        return None
    return [x0, y0, x1 - x0, y1 - y0]


def iter_vg_records(region_descriptions: str | Path | list, image_data: str | Path | list,
                    image_root: str | Path = "", max_regions_per_image: int | None = None,
                    progress: bool = False) -> Iterator[dict]:
    """One ``caption_brief`` record per region phrase, images in file order.

    ``max_regions_per_image`` keeps the first regions of each image (VG has ~50 per image).
    Regions of images missing from ``image_data`` and boxes outside their image are skipped.
    """
    images = {int(e["image_id"]): e for e in _load(image_data)}
    prompt = templates.brief_caption_prompt(1)
    skipped = 0
    for entry in tqdm(_load(region_descriptions), desc="visual genome", disable=not progress,
                      unit="image"):
        regions = entry.get("regions") or []
        image_id = entry.get("id", entry.get("image_id"))
        if image_id is None and regions:
            image_id = regions[0]["image_id"]
        info = images.get(int(image_id)) if image_id is not None else None
        if info is None:
            skipped += len(regions)
            continue
        path = image_relpath(info)
        path = (Path(image_root) / path).as_posix() if str(image_root) else path
        w, h = int(info["width"]), int(info["height"])
        for region in regions[:max_regions_per_image]:
            box = clip_box(region, w, h)
            phrase = str(region.get("phrase", "")).strip()
            if box is None or not phrase:
                skipped += 1
                continue
            rid = int(region["region_id"])
            yield make_record(f"vg-{rid}", path, {"type": "boxes", "boxes": [box], "ids": [rid]},
                              [rid], "caption_brief", prompt, phrase,
                              {"image_id": int(image_id), "region_id": rid,
                               "image_size": [h, w]})
    if skipped:
        log.warning("visual genome: skipped %d regions (no image entry, empty box or phrase)",
                    skipped)


def vg_to_records(region_descriptions: str | Path | list, image_data: str | Path | list,
                  image_root: str | Path = "", max_regions_per_image: int | None = None,
                  progress: bool = False) -> list[dict]:
    """All records of :func:`iter_vg_records` as a list."""
    out = list(iter_vg_records(region_descriptions, image_data, image_root,
                               max_regions_per_image, progress))
    log.info("visual genome: %d region-caption records", len(out))
    return out
