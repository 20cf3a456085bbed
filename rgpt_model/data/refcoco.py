"""RefCOCO-style referring annotations -> JSONL REC records with several candidate regions.

Refs follow refer's ``refs(unc).p`` layout: ``{"ref_id", "ann_id", "image_id", "split",
"sentences": [{"sent": ..., "raw": ..., "sent_id": ...}]}``; they may come as a JSON list or the
original pickle. Candidates are the (non-crowd) COCO instances of the ref's image; the target's
1-based position among them is the answer "Region [k]".
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rgpt_model.data import templates
from rgpt_model.data.coco import ann_to_rle, image_path, index_annotations, load_coco
from rgpt_model.data.jsonl_format import make_record

log = logging.getLogger(__name__)


def load_refs(refs: str | Path | Sequence[dict]) -> list[dict]:
    """Refs from a JSON list file, a pickle (``refs(unc).p``) or an in-memory list."""
    if not isinstance(refs, str | Path):
        return list(refs)
    path = Path(refs)
    if path.suffix in (".p", ".pkl", ".pickle"):
        # Only open pickles you trust: unpickling runs code. refer's files are Python 2
        # pickles, hence latin1.
        with path.open("rb") as f:
            data = pickle.load(f, encoding="latin1")
    else:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of refs, got {type(data).__name__}")
    return data


def _sentences(ref: dict) -> list[tuple[str, str]]:
    out = []
    for k, s in enumerate(ref.get("sentences", [])):
        text = (s.get("sent") or s.get("raw") or "").strip() if isinstance(s, dict) else str(s)
        if text:
            out.append((str(s.get("sent_id", k)) if isinstance(s, dict) else str(k), text))
    return out


def _prepare(refs, instances, split):
    coco = load_coco(instances)
    images = {int(im["id"]): im for im in coco.get("images", [])}
    by_image = index_annotations(coco)
    chosen = [r for r in load_refs(refs) if split is None or r.get("split") == split]
    chosen.sort(key=lambda r: int(r["ref_id"]))
    return images, by_image, chosen


def refcoco_to_records(
    refs: str | Path | Sequence[dict],
    instances: str | Path | dict,
    image_root: str | Path = "",
    split: str | None = None,
    max_candidates: int | None = None,
    negative_fraction: float = 0.0,
    seed: int = 0,
    progress: bool = False,
) -> list[dict]:
    """One REC record per sentence; candidates shuffled with ``seed``.

    ``max_candidates`` keeps the target plus randomly chosen others. With probability
    ``negative_fraction`` the target is left out and the answer is the no-match sentence
    (a referring expression names only its target, so nothing else should fit).
    """
    images, by_image, chosen = _prepare(refs, instances, split)
    rng = np.random.default_rng(seed)
    out: list[dict] = []
    skipped = 0
    for ref in tqdm(chosen, desc="refcoco", disable=not progress, unit="ref"):
        img = images.get(int(ref["image_id"]))
        anns = {int(a["id"]): a for a in by_image.get(int(ref["image_id"]), [])}
        target = int(ref["ann_id"])
        if img is None or target not in anns:
            skipped += 1
            continue
        h, w = int(img["height"]), int(img["width"])
        rles = {aid: ann_to_rle(a, h, w) for aid, a in anns.items()}
        for sent_id, text in _sentences(ref):
            others = [a for a in sorted(anns) if a != target]
            if max_candidates is not None and len(others) >= max_candidates:
                pick = rng.choice(len(others), size=max_candidates - 1, replace=False)
                others = [others[int(i)] for i in sorted(pick)]
            negative = bool(others) and rng.random() < negative_fraction
            cands = others if negative else others + [target]
            order = [cands[int(i)] for i in rng.permutation(len(cands))]
            answer = [] if negative else [order.index(target) + 1]
            masks = {"type": "rle", "rles": [rles[a] for a in order], "ids": order}
            meta = {
                "ref_id": int(ref["ref_id"]),
                "image_id": int(ref["image_id"]),
                "expression": text,
                "target_ids": [] if negative else [target],
                "split": ref.get("split"),
            }
            out.append(
                make_record(
                    f"refcoco-{ref['ref_id']}-{sent_id}",
                    image_path(img, image_root),
                    masks,
                    order,
                    "refer",
                    templates.refer_prompt(len(order), text),
                    templates.refer_answer(answer),
                    meta,
                )
            )
    if skipped:
        log.warning("refcoco: skipped %d refs whose image or ann_id is missing", skipped)
    log.info("refcoco: %d REC records from %d refs", len(out), len(chosen))
    return out


def refcoco_caption_records(
    refs: str | Path | Sequence[dict],
    instances: str | Path | dict,
    image_root: str | Path = "",
    split: str | None = None,
) -> list[dict]:
    """RefCOCOg-style region captions: one detailed-caption record per sentence."""
    images, by_image, chosen = _prepare(refs, instances, split)
    out: list[dict] = []
    for ref in chosen:
        img = images.get(int(ref["image_id"]))
        anns = {int(a["id"]): a for a in by_image.get(int(ref["image_id"]), [])}
        target = int(ref["ann_id"])
        if img is None or target not in anns:
            continue
        rle = ann_to_rle(anns[target], int(img["height"]), int(img["width"]))
        for sent_id, text in _sentences(ref):
            out.append(
                make_record(
                    f"refcap-{ref['ref_id']}-{sent_id}",
                    image_path(img, image_root),
                    {"type": "rle", "rles": [rle], "ids": [target]},
                    [target],
                    "caption_detail",
                    templates.detail_caption_prompt(1),
                    text,
                    {"ref_id": int(ref["ref_id"]), "image_id": int(ref["image_id"])},
                )
            )
    return out
