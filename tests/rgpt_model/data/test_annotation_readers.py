"""Readers of the original annotation files, on small files written here in each dataset's
exact published layout, and their records as the trainer's training source.

Layouts: COCO ``instances_*.json`` (info/licenses/images/annotations/categories), LVIS v1
(images named by ``coco_url`` only, no ``iscrowd``, ``aerosol_can`` style names), V3Det
(COCO layout, boxes only), refer's ``refs(unc).p`` / ``refs(umd).p`` (Python 2 pickles: their
strings are byte strings, written here opcode by opcode as Python 2's pickler writes them)
with refer's ``instances.json``, Visual Genome v1.2 ``region_descriptions.json`` +
``image_data.json``, and the JSONL that rgpt_model.data.region_captions writes.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from rgpt_model.data import region_captions as rc
from rgpt_model.data.coco import coco_to_records
from rgpt_model.data.jsonl_format import load_record, write_label_png
from rgpt_model.data.refcoco import load_refs
from rgpt_model.data.visual_genome import vg_to_records
from rgpt_model.training.annotation_source import READERS, annotation_records
from rgpt_model.training.config import DataSpec, TrainConfig
from rgpt_model.training.conversation_source import ConversationSource
from rgpt_model.training.step_batches import StepBatches

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2
H, W = 24, 32


def py2_pickle(obj) -> bytes:
    """``obj`` as Python 2's ``cPickle.dump(obj, f, 2)`` writes it: str as SHORT_BINSTRING /
    BINSTRING (bytes, which Python 3 reads back with ``encoding="latin1"``)."""
    out = bytearray(b"\x80\x02")

    def put(o) -> None:
        if isinstance(o, bool) or o is None:
            out.extend({True: b"\x88", False: b"\x89", None: b"N"}[o])
        elif isinstance(o, int):
            out.extend(b"J" + struct.pack("<i", o))
        elif isinstance(o, float):
            out.extend(b"G" + struct.pack(">d", o))
        elif isinstance(o, str):
            raw = o.encode("latin1")
            out.extend((b"U" + bytes([len(raw)])) if len(raw) < 256
                       else (b"T" + struct.pack("<i", len(raw))))
            out.extend(raw)
        elif isinstance(o, list):
            out.extend(b"]")
            if o:
                out.extend(b"(")
                for item in o:
                    put(item)
                out.extend(b"e")
        elif isinstance(o, dict):
            out.extend(b"}")
            if o:
                out.extend(b"(")
                for k, v in o.items():
                    put(k)
                    put(v)
                out.extend(b"u")
        else:
            raise TypeError(type(o))

    put(obj)
    out.extend(b".")
    return bytes(out)


def _image(path, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), value, np.uint8)).save(path)


def _instances(file_names: list[str], with_crowd: bool = True) -> dict:
    """A COCO instances file in the official layout (two images, three categories)."""
    images = [{"license": 1, "file_name": name, "coco_url": f"http://images.cocodataset.org/"
               f"train2017/{name.split('_')[-1]}", "height": H, "width": W,
               "date_captured": "2013-11-14 17:02:52", "flickr_url": "http://x", "id": i + 1}
              for i, name in enumerate(file_names)]
    anns = [
        {"segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]], "area": 80.0, "iscrowd": 0,
         "image_id": 1, "bbox": [2.0, 2.0, 10.0, 8.0], "category_id": 18, "id": 101},
        {"segmentation": [[16, 4, 28, 4, 28, 20, 16, 20]], "area": 192.0, "iscrowd": 0,
         "image_id": 1, "bbox": [16.0, 4.0, 12.0, 16.0], "category_id": 10, "id": 102},
        {"segmentation": [[4, 12, 14, 12, 14, 22, 4, 22]], "area": 100.0, "iscrowd": 0,
         "image_id": 2, "bbox": [4.0, 12.0, 10.0, 10.0], "category_id": 1, "id": 103},
    ]
    if with_crowd:
        anns.append({"segmentation": {"counts": [0, 4, 20], "size": [H, W]}, "area": 4.0,
                     "iscrowd": 1, "image_id": 2, "bbox": [0.0, 0.0, 1.0, 4.0],
                     "category_id": 1, "id": 900})
    return {
        "info": {"description": "COCO 2017 Dataset", "version": "1.0", "year": 2017},
        "licenses": [{"url": "http://x", "id": 1, "name": "Attribution License"}],
        "images": images,
        "annotations": anns,
        "categories": [{"supercategory": "person", "id": 1, "name": "person"},
                       {"supercategory": "outdoor", "id": 10, "name": "traffic light"},
                       {"supercategory": "animal", "id": 18, "name": "dog"}],
    }


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Dataset roots, each in its published layout."""
    base = tmp_path_factory.mktemp("datasets")
    coco = base / "coco"
    names17 = ["000000000001.jpg", "000000000002.jpg"]
    for k, name in enumerate(names17):
        _image(coco / "train2017" / name, 60 + k)
    (coco / "annotations").mkdir(parents=True)
    (coco / "annotations" / "instances_train2017.json").write_text(
        json.dumps(_instances(names17)))
    names14 = [f"COCO_train2014_{n}" for n in names17]
    for k, name in enumerate(names14):
        _image(coco / "train2014" / name, 70 + k)

    lvis = base / "lvis"
    lvis.mkdir()
    lv = _instances(names17, with_crowd=False)
    for img in lv["images"]:  # LVIS v1: no file_name, extra keys
        del img["file_name"]
        img.update(neg_category_ids=[], not_exhaustive_category_ids=[])
    for ann in lv["annotations"]:
        del ann["iscrowd"]
    lv["categories"] = [
        {"id": 1, "name": "aerosol_can", "synset": "aerosol.n.02", "synonyms": ["aerosol_can"],
         "def": "a dispenser", "frequency": "c", "image_count": 1, "instance_count": 1},
        {"id": 10, "name": "bow_(weapon)", "synset": "bow.n.04", "synonyms": ["bow_(weapon)"],
         "def": "a weapon", "frequency": "r", "image_count": 1, "instance_count": 1},
        {"id": 18, "name": "dog", "synset": "dog.n.01", "synonyms": ["dog"], "def": "a dog",
         "frequency": "f", "image_count": 1, "instance_count": 1}]
    (lvis / "lvis_v1_train.json").write_text(json.dumps(lv))

    refer = base / "refer"
    inst = _instances(names14)
    refs = [
        {"sent_ids": [0, 1], "file_name": "COCO_train2014_000000000001_102.jpg", "ann_id": 102,
         "ref_id": 0, "image_id": 1, "split": "train",
         "sentences": [{"tokens": ["the", "light", "on", "the", "right"],
                        "raw": "The light on the right", "sent_id": 0,
                        "sent": "the light on the right"},
                       {"tokens": ["traffic", "light"], "raw": "traffic light!",
                        "sent_id": 1, "sent": "traffic light"}],
         "category_id": 10},
        {"sent_ids": [2], "file_name": "COCO_train2014_000000000001_101.jpg", "ann_id": 101,
         "ref_id": 1, "image_id": 1, "split": "testA",
         "sentences": [{"tokens": ["dog"], "raw": "dog", "sent_id": 2, "sent": "dog"}],
         "category_id": 18},
    ]
    for folder, refs_name in (("refcoco", "refs(unc).p"), ("refcocog", "refs(umd).p")):
        (refer / folder).mkdir(parents=True)
        (refer / folder / refs_name).write_bytes(py2_pickle(refs))
        (refer / folder / "instances.json").write_text(json.dumps(inst))

    vg = base / "vg"
    _image(vg / "VG_100K_2" / "1.jpg", 40)
    _image(vg / "VG_100K" / "10.jpg", 50)
    (vg / "image_data.json").write_text(json.dumps([
        {"width": W, "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg",
         "height": H, "image_id": 1, "coco_id": None, "flickr_id": None},
        {"width": W, "url": "https://cs.stanford.edu/people/rak248/VG_100K/10.jpg",
         "height": H, "image_id": 10, "coco_id": 139, "flickr_id": 1234}]))
    (vg / "region_descriptions.json").write_text(json.dumps([
        {"regions": [
            {"region_id": 1382, "width": 10, "height": 6, "image_id": 1,
             "phrase": "the clock is green in colour", "y": 3, "x": 4},
            {"region_id": 1383, "width": 20, "height": 30, "image_id": 1,
             "phrase": "shade is along the street ", "y": 10, "x": 20},  # overhangs: clipped
            {"region_id": 1384, "width": 5, "height": 5, "image_id": 1,
             "phrase": "outside the image", "y": 100, "x": 100}],
         "id": 1},
        {"regions": [{"region_id": 5000, "width": 8, "height": 8, "image_id": 10,
                      "phrase": "a red sign", "y": 0, "x": 0}], "id": 10},
        {"regions": [{"region_id": 7000, "width": 8, "height": 8, "image_id": 99,
                      "phrase": "image 99 is not in image_data", "y": 0, "x": 0}], "id": 99},
    ]))

    captions = base / "captions"
    captions.mkdir()
    scene = np.zeros((H, W), np.uint16)
    scene[2:10, 3:13] = 4
    _image(captions / "images" / "s0.png", 30)
    write_label_png(captions / "labels" / "s0.png", scene)

    class FixedCaptioner(rc.Captioner):
        def caption(self, image, prompt, mask=None):
            return "a grey room" if mask is None else "a flat grey patch"

    items = list(rc.items_from_dirs(captions / "images", captions / "labels"))
    rc.run_pipeline(items, FixedCaptioner(), captions / "caps.jsonl", progress=False)
    return {"coco": coco, "lvis": lvis, "refer": refer, "vg": vg,
            "captions": captions / "caps.jsonl"}


def _box(x, y, w, h):
    m = np.zeros((H, W), bool)
    m[y:y + h, x:x + w] = True
    return m


def test_refer_pickles_are_read_as_python2_wrote_them(roots):
    raw = (roots["refer"] / "refcoco" / "refs(unc).p").read_bytes()
    assert b"U\x05split" in raw  # SHORT_BINSTRING: a Python 2 str, not a Python 3 str
    refs = load_refs(roots["refer"] / "refcoco" / "refs(unc).p")
    assert refs[0]["sentences"][0]["sent"] == "the light on the right"
    assert refs[0]["sent_ids"] == [0, 1] and refs[1]["split"] == "testA"


def test_coco_and_lvis_classification_records(roots):
    coco = coco_to_records(roots["coco"] / "annotations" / "instances_train2017.json",
                           roots["coco"] / "train2017", tasks=("classify",))
    assert [r["meta"]["ann_id"] for r in coco] == [101, 102, 103]  # the crowd one is left out
    assert [r["conversations"][1]["value"] for r in coco] == ["dog", "traffic light", "person"]
    image, masks = load_record(coco[1])
    assert image[0, 0, 0] == 60 and masks[0].sum() > 0 and masks[0][10, 20]
    lvis = coco_to_records(roots["lvis"] / "lvis_v1_train.json", roots["coco"],
                           vocabulary_name="LVIS", tasks=("classify",))
    assert [r["conversations"][1]["value"] for r in lvis] == ["dog", "bow (weapon)",
                                                              "aerosol can"]
    assert "using LVIS category names" in lvis[0]["conversations"][0]["value"]
    assert lvis[2]["image"].endswith("coco/train2017/000000000002.jpg")
    image, masks = load_record(lvis[2])
    assert image[0, 0, 0] == 61 and masks[0][15, 8] and not masks[0][2, 20]


def test_visual_genome_region_captions(roots):
    vg = roots["vg"]
    recs = vg_to_records(vg / "region_descriptions.json", vg / "image_data.json", vg)
    assert [r["meta"]["region_id"] for r in recs] == [1382, 1383, 5000]
    assert [r["conversations"][1]["value"] for r in recs] == [
        "the clock is green in colour", "shade is along the street", "a red sign"]
    assert all(r["task"] == "caption_brief" for r in recs)
    image, masks = load_record(recs[0])
    assert image[0, 0, 0] == 40 and np.array_equal(masks[0], _box(4, 3, 10, 6))
    _, masks = load_record(recs[1])
    assert np.array_equal(masks[0], _box(20, 10, W - 20, H - 10))  # clipped to the image
    image, _ = load_record(recs[2])
    assert image[0, 0, 0] == 50  # from VG_100K/, as its url says


def _run(roots, readers: list[str], **data) -> TrainConfig:
    spec = DataSpec(source="annotations", annotations=readers, coco_root=str(roots["coco"]),
                    lvis_root=str(roots["lvis"]), refcoco_root=str(roots["refer"]),
                    vg_root=str(roots["vg"]), region_captions=[str(roots["captions"])],
                    **data)
    return TrainConfig(data=spec, images_per_step=6)


def test_every_reader_finds_its_files_under_its_root(roots):
    cfg = _run(roots, [name for name in READERS if name not in ("v3det", "refcoco+")])
    records = annotation_records(cfg.data)
    assert {k: len(v) for k, v in records.items()} == {
        "coco": 3, "lvis": 3, "refcoco": 2, "refcocog": 4, "vg": 3, "region_captions": 1}
    rec = records["refcoco"][0]  # split "train": ref 0, both sentences, all 2 candidates
    k = rec["region_ids"].index(102) + 1
    assert rec["conversations"][1]["value"] == f"Region [{k}]"
    image, masks = load_record(rec)
    assert image[0, 0, 0] == 70 and masks[k - 1][10, 20]  # train2014 image, the light's mask
    caption = records["refcocog"][-1]
    assert caption["task"] == "caption_detail"
    assert caption["conversations"][1]["value"] == "traffic light"
    cap = records["region_captions"][0]
    assert cap["conversations"][1]["value"] == "a flat grey patch"
    assert cap["meta"]["global_caption"] == "a grey room"
    with pytest.raises(ValueError, match="needs data.vg_root"):
        annotation_records(DataSpec(source="annotations", annotations=["vg"]))
    with pytest.raises(ValueError, match="published layout"):
        annotation_records(DataSpec(source="annotations", annotations=["coco"],
                                    coco_root=str(roots["vg"])))


def test_annotations_are_a_training_source(roots, tiny_model_dir):
    from rgpt_model.build import build_pretrained

    cfg = _run(roots, ["coco", "refcoco", "vg", "region_captions"])
    convs = ConversationSource(cfg).batch(0, 0)
    assert len(convs) == 6
    answers = {t.answer for c in convs for t in c.turns}
    expected = {"dog", "traffic light", "person", "Region [1]", "Region [2]",
                "the clock is green in colour", "shade is along the street", "a red sign",
                "a flat grey patch"}
    assert answers <= expected and len(answers) >= 3
    assert ConversationSource(cfg).batch(0, 0)[0].turns == convs[0].turns  # seeded
    model, processor = build_pretrained(tiny_model_dir)
    batch, n_turns = StepBatches(cfg, processor, model.config.region_token_ids).make_batch(0, 0)
    assert n_turns == 6 and batch["input_ids"].shape[0] == 6
    out = model(**{k: batch[k] for k in ("input_ids", "pixel_values", "masks", "attention_mask",
                                         "labels", "region_image_index",
                                         "region_feature_index", "sample_image_index")})
    assert torch.isfinite(out.loss)
    supervised = [processor.tokenizer.decode([t for t in row if t >= 0], skip_special_tokens=True)
                  for row in batch["labels"].tolist()]
    assert all(s.strip() for s in supervised)  # every sequence carries its answer


def test_command_line_writes_each_readers_records_as_jsonl(roots, tmp_path):
    import yaml

    from rgpt_model.data.jsonl_format import load_jsonl
    from rgpt_model.training import annotation_source

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"data": {"source": "annotations",
                                               "annotations": ["vg", "refcocog"]}}))
    assert annotation_source.main([str(config), "--out", str(tmp_path / "out"),
                                   "--set", f"data.vg_root={roots['vg']}",
                                   "--set", f"data.refcoco_root={roots['refer']}",
                                   "--set", f"data.coco_root={roots['coco']}"]) == 0
    vg = load_jsonl(tmp_path / "out" / "vg.jsonl")
    assert [r["conversations"][1]["value"] for r in vg][:1] == ["the clock is green in colour"]
    assert len(load_jsonl(tmp_path / "out" / "refcocog.jsonl")) == 4
    image, _ = load_record(vg[0], tmp_path / "out")  # absolute image paths
    assert image[0, 0, 0] == 40
