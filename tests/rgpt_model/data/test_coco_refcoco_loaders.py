"""COCO and RefCOCO loaders on small annotation files written by the tests."""

import json
import pickle

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from rgpt_model.data.coco import ann_to_rle, class_names, coco_to_records
from rgpt_model.data.jsonl_format import load_jsonl, load_record, write_jsonl
from rgpt_model.data.refcoco import load_refs, refcoco_caption_records, refcoco_to_records

H, W = 20, 30
# pycocotools' decode trips numpy 2's copy-keyword deprecation notice; harmless here.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _coco(tmp_path):
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(tmp_path / "a.jpg")
    box = np.zeros((H, W), np.uint8)
    box[2:8, 3:12] = 1
    rle = mask_utils.encode(np.asfortranarray(box))
    rle["counts"] = rle["counts"].decode()
    # Uncompressed RLE of rows 12..17, cols 20..27 (column-major runs).
    unc = np.zeros((H, W), np.uint8)
    unc[12:18, 20:28] = 1
    flat = unc.flatten(order="F")
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": H, "width": W}],
        "categories": [
            {"id": 1, "name": "person"},
            {"id": 3, "name": "car"},
            {"id": 2, "name": "dog"},
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 54,
                "bbox": [3, 2, 9, 6],
                "segmentation": rle,
                "caption": "a man in red",
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 2,
                "iscrowd": 0,
                "area": 40,
                "bbox": [14, 2, 8, 5],
                "segmentation": [[14, 2, 22, 2, 22, 7, 14, 7]],
            },
            {
                "id": 12,
                "image_id": 1,
                "category_id": 3,
                "iscrowd": 0,
                "area": 48,
                "bbox": [20, 12, 8, 6],
                "segmentation": {"size": [H, W], "counts": runs},
            },
            {
                "id": 13,
                "image_id": 1,
                "category_id": 3,
                "iscrowd": 1,
                "area": 5,
                "bbox": [0, 0, 2, 2],
                "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]],
            },
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    return coco, path, box, unc


def test_ann_to_rle_formats(tmp_path):
    coco, _, box, unc = _coco(tmp_path)
    anns = coco["annotations"]
    dec = [
        mask_utils.decode({**ann_to_rle(a, H, W), "counts": ann_to_rle(a, H, W)["counts"].encode()})
        for a in anns[:3]
    ]
    assert np.array_equal(dec[0], box)
    assert dec[1][3, 15] == 1 and dec[1][10, 15] == 0
    assert np.array_equal(dec[2], unc)
    no_seg = {"bbox": [1, 1, 4, 3]}
    assert mask_utils.area({**ann_to_rle(no_seg, H, W)}) > 0
    assert class_names(coco) == ["person", "dog", "car"]


def test_coco_records(tmp_path):
    _, path, box, unc = _coco(tmp_path)
    recs = coco_to_records(path)
    cls = [r for r in recs if r["task"] == "classify"]
    caps = [r for r in recs if r["task"] == "caption_detail"]
    assert [r["conversations"][1]["value"] for r in cls] == ["person", "dog", "car"]
    assert "person, dog, car." in cls[0]["conversations"][0]["value"]
    named = coco_to_records(path, vocabulary_name="toy", tasks=("classify",))
    assert "using toy category names" in named[0]["conversations"][0]["value"]
    assert len(caps) == 1 and caps[0]["conversations"][1]["value"] == "a man in red"
    write_jsonl(tmp_path / "coco.jsonl", recs)
    back = load_jsonl(tmp_path / "coco.jsonl")
    image, masks = load_record(back[0], tmp_path)
    assert image.shape == (H, W, 3) and np.array_equal(masks[0], box.astype(bool))
    car = next(r for r in back if r["conversations"][1]["value"] == "car")
    _, masks = load_record(car, tmp_path)
    assert np.array_equal(masks[0], unc.astype(bool))


@pytest.mark.parametrize("fmt", ["json", "pickle"])
def test_refcoco_records(tmp_path, fmt):
    _, inst, _, unc = _coco(tmp_path)
    refs = [
        {
            "ref_id": 5,
            "ann_id": 12,
            "image_id": 1,
            "split": "val",
            "category_id": 3,
            "sentences": [
                {"sent": "car on the right", "sent_id": 50},
                {"raw": "Bottom right car", "sent_id": 51},
            ],
        },
        {
            "ref_id": 6,
            "ann_id": 10,
            "image_id": 1,
            "split": "train",
            "category_id": 1,
            "sentences": [{"sent": "man in red", "sent_id": 60}],
        },
        {"ref_id": 7, "ann_id": 999, "image_id": 1, "split": "val", "sentences": [{"sent": "x"}]},
    ]
    if fmt == "json":
        path = tmp_path / "refs.json"
        path.write_text(json.dumps(refs))
    else:
        path = tmp_path / "refs(unc).p"
        path.write_bytes(pickle.dumps(refs, protocol=2))
    assert load_refs(path) == refs
    recs = refcoco_to_records(path, inst, split="val", seed=1)
    assert len(recs) == 2
    for r in recs:
        assert sorted(r["region_ids"]) == [10, 11, 12]
        k = r["region_ids"].index(12) + 1
        assert r["conversations"][1]["value"] == f"Region [{k}]"
        assert "<region3>" in r["conversations"][0]["value"]
        _, masks = load_record(r, tmp_path)
        assert np.array_equal(masks[k - 1], unc.astype(bool))
    assert recs[1]["meta"]["expression"] == "Bottom right car"
    assert refcoco_to_records(path, inst, split="val", seed=1) == recs
    few = refcoco_to_records(path, inst, max_candidates=2, seed=0)
    assert all(len(r["region_ids"]) == 2 for r in few)
    neg = refcoco_to_records(path, inst, negative_fraction=1.0)
    assert all(r["conversations"][1]["value"] == "No corresponding options found." for r in neg)
    assert all(12 not in r["region_ids"] for r in neg if r["meta"]["ref_id"] == 5)
    caps = refcoco_caption_records(path, inst, split="train")
    assert [c["conversations"][1]["value"] for c in caps] == ["man in red"]
