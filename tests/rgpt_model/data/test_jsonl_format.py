"""JSONL region-instruction format: validation, round trips, mask loading, dataset command."""

import hashlib
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from rgpt_model.data.jsonl_format import (
    JsonlFormatError,
    load_jsonl,
    load_masks,
    load_record,
    make_record,
    read_label_png,
    validate_record,
    write_jsonl,
    write_label_png,
)
from rgpt_model.data.make_synthetic import main as make_synthetic_main


def _rec(**kw):
    rec = {
        "id": "r0",
        "image": "img.png",
        "masks": {"type": "boxes", "boxes": [[0, 0, 4, 4], [4, 4, 2, 2]]},
        "region_ids": [2, 1],
        "task": "refer",
        "conversations": [
            {"from": "human", "value": "<region1> or <region2>?"},
            {"from": "gpt", "value": "Region [1]"},
        ],
    }
    rec.update(kw)
    return rec


def test_valid_record_passes():
    assert validate_record(_rec())["id"] == "r0"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"task": "dance"}, "unknown task"),
        ({"region_ids": [1, 1]}, "duplicates"),
        ({"region_ids": [3]}, "not among the mask ids"),
        ({"region_ids": [1]}, "<region2>"),
        ({"masks": {"type": "boxes", "boxes": [[0, 0, 0, 4]]}}, "w, h > 0"),
        ({"masks": {"type": "png"}}, "'type'"),
        (
            {"conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]},
            "must come from 'human'",
        ),
    ],
)
def test_invalid_records_raise(change, message):
    with pytest.raises(JsonlFormatError, match=message):
        validate_record(_rec(**change))


def test_reader_reports_line_numbers(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps(_rec()) + "\n\n" + json.dumps(_rec(task="nope")) + "\n")
    with pytest.raises(JsonlFormatError, match=r"x.jsonl:3: unknown task"):
        load_jsonl(p)
    p.write_text(json.dumps(_rec()) + "\n{not json\n")
    with pytest.raises(JsonlFormatError, match=r"x.jsonl:2: invalid JSON"):
        load_jsonl(p)


def test_round_trip_and_all_mask_types(tmp_path):
    from PIL import Image

    img = np.zeros((8, 10, 3), np.uint8)
    img[..., 0] = 200
    Image.fromarray(img).save(tmp_path / "img.png")
    labels = np.zeros((8, 10), np.uint16)
    labels[0:3, 0:3] = 7
    labels[5:8, 6:10] = 300
    write_label_png(tmp_path / "lab.png", labels)
    assert np.array_equal(read_label_png(tmp_path / "lab.png"), labels)
    rle = [mask_utils.encode(np.asfortranarray((labels == i).astype(np.uint8))) for i in (7, 300)]
    for r in rle:
        r["counts"] = r["counts"].decode()
    recs = [
        make_record(
            "a",
            "img.png",
            {"type": "label_png", "path": "lab.png"},
            [300, 7],
            "classify",
            "<region1> <region2>",
            "x",
        ),
        make_record(
            "b",
            str(tmp_path / "img.png"),
            {"type": "rle", "rles": rle, "ids": [7, 300]},
            [300, 7],
            "free",
            "q",
            "a",
        ),
        make_record(
            "c",
            "img.png",
            {"type": "boxes", "boxes": [[6, 5, 4, 3], [0, 0, 3, 3]]},
            [1, 2],
            "free",
            "q",
            "a",
        ),
    ]
    assert write_jsonl(tmp_path / "d.jsonl", recs) == 3
    back = load_jsonl(tmp_path / "d.jsonl")
    assert back == recs
    for rec in back:
        image, masks = load_record(rec, tmp_path)
        assert image.shape == (8, 10, 3) and masks.dtype == bool
        assert np.array_equal(masks[0], labels == 300)
        assert np.array_equal(masks[1], labels == 7)
    bad = make_record(
        "d", "img.png", {"type": "label_png", "path": "lab.png"}, [5], "free", "q", "a"
    )
    with pytest.raises(JsonlFormatError, match="no pixels"):
        load_masks(bad, (8, 10), tmp_path)


def _tree_digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_make_synthetic_command(tmp_path, capsys):
    args = ["--train", "6", "--val", "2", "--test", "2", "--no-progress", "--log-level", "WARNING"]
    assert make_synthetic_main(["--out", str(tmp_path / "a"), *args]) == 0
    assert make_synthetic_main(["--out", str(tmp_path / "b"), *args]) == 0
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    root = tmp_path / "a"
    recs = load_jsonl(root / "train.jsonl")
    assert {r["task"] for r in recs} == {
        "classify",
        "caption_brief",
        "caption_detail",
        "refer",
        "short_answer",
    }
    for rec in recs[:40]:
        image, masks = load_record(rec, root)
        assert image.shape == (128, 128, 3) and len(masks) == len(rec["region_ids"])
    refer = [r for r in recs if r["task"] == "refer"]
    for r in refer:
        ans = r["conversations"][1]["value"]
        tgt = r["meta"]["target_ids"]
        if tgt:
            assert ans == f"Region [{r['region_ids'].index(tgt[0]) + 1}]"
        else:
            assert ans == "No corresponding options found."
    assert any(not r["meta"]["target_ids"] for r in refer)
    meta = json.loads((root / "meta.json").read_text())
    assert len(meta["held_out_pairs"]) == 8
    words = (root / "words.txt").read_text().split()
    assert "circle" in words and len(words) < 150
    with pytest.raises(SystemExit):
        make_synthetic_main(["--help"])
    assert "--negatives-per-scene" in capsys.readouterr().out
