"""Training records straight from the original datasets' annotation files (``data.source:
annotations``), each dataset found under its root in its published layout.

Readers and what each reads under its root (task in brackets):

- ``coco``: ``coco_root``/annotations/instances_train2017.json, train2017/ (classify)
- ``lvis``: ``lvis_root``/lvis_v1_train.json, images from ``coco_root`` (classify)
- ``v3det``: ``v3det_root``/annotations/v3det_2023_v1_train.json, images as named (classify)
- ``refcoco``, ``refcoco+``: ``refcoco_root``/refcoco[+]/refs(unc).p + instances.json, images
  ``coco_root``/train2014 (refer)
- ``refcocog``: ``refcoco_root``/refcocog/refs(umd).p + instances.json, same images (refer and
  caption_detail)
- ``vg``: ``vg_root``/region_descriptions.json, image_data.json, VG_100K[_2]/ (caption_brief)
- ``region_captions``: ``data.region_captions``, JSONL files written by
  rgpt_model.data.region_captions (caption_detail)

The records are the JSONL region-instruction format's (rgpt_model.data.jsonl_format), so
the trainer reads them as it reads JSONL files; ``python -m
rgpt_model.training.annotation_source CONFIG --out DIR`` writes them out as such files.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from rgpt_model.training.config import DataSpec, config_tool_parser

logger = logging.getLogger(__name__)

Records = list[dict]
# our choice: at most as many REC candidates as the model handles in one prompt
MAX_REC_CANDIDATES = 8


def _root(data: DataSpec, name: str, reader: str) -> Path:
    value = getattr(data, name)
    if not value:
        raise ValueError(f"data.annotations lists {reader!r}, which needs data.{name} "
                         f"(e.g. --set data.{name}=/datasets/...)")
    root = Path(value).expanduser().resolve()  # records keep absolute image paths
    if not root.is_dir():
        raise ValueError(f"data.{name}={value!r} is not a directory")
    return root


def _file(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise ValueError(f"{path} is missing: {root} does not hold the dataset's published "
                         f"layout (expected {relative} under it)")
    return path


def _coco(data: DataSpec) -> Records:
    from rgpt_model.data.coco import coco_to_records

    root = _root(data, "coco_root", "coco")
    return coco_to_records(_file(root, f"annotations/instances_{data.annotation_split}2017.json"),
                           root / f"{data.annotation_split}2017", tasks=("classify",),
                           progress=True)


def _lvis(data: DataSpec) -> Records:
    from rgpt_model.data.coco import coco_to_records

    root = _root(data, "lvis_root", "lvis")
    return coco_to_records(_file(root, f"lvis_v1_{data.annotation_split}.json"),
                           _root(data, "coco_root", "lvis"), vocabulary_name="LVIS",
                           tasks=("classify",), progress=True)


def _v3det(data: DataSpec) -> Records:
    from rgpt_model.data.coco import coco_to_records

    root = _root(data, "v3det_root", "v3det")
    return coco_to_records(
        _file(root, f"annotations/v3det_2023_v1_{data.annotation_split}.json"), root,
        vocabulary_name="V3Det", tasks=("classify",), progress=True)


def _refcoco(dataset: str, refs_file: str, captions: bool) -> Callable[[DataSpec], Records]:
    def read(data: DataSpec) -> Records:
        from rgpt_model.data.refcoco import refcoco_caption_records, refcoco_to_records

        folder = _root(data, "refcoco_root", dataset) / dataset
        refs, instances = _file(folder, refs_file), _file(folder, "instances.json")
        images = _root(data, "coco_root", dataset) / "train2014"
        out = refcoco_to_records(refs, instances, images, split=data.annotation_split,
                                 max_candidates=MAX_REC_CANDIDATES, seed=data.seed,
                                 progress=True)
        if captions:
            out += refcoco_caption_records(refs, instances, images, split=data.annotation_split)
        return out

    return read


def _vg(data: DataSpec) -> Records:
    from rgpt_model.data.visual_genome import vg_to_records

    root = _root(data, "vg_root", "vg")
    return vg_to_records(_file(root, "region_descriptions.json"), _file(root, "image_data.json"),
                         root, progress=True)


def _region_captions(data: DataSpec) -> Records:
    from rgpt_model.data.jsonl_format import read_jsonl, resolve_path

    if not data.region_captions:
        raise ValueError("data.annotations lists 'region_captions', which needs "
                         "data.region_captions: the JSONL files rgpt_model.data.region_captions "
                         "wrote")
    out = []
    for path in data.region_captions:
        for rec in read_jsonl(path):  # the pipeline writes absolute paths; others: file-relative
            rec["image"] = resolve_path(rec["image"], Path(path).parent).as_posix()
            if rec["masks"]["type"] == "label_png":
                rec["masks"]["path"] = resolve_path(rec["masks"]["path"],
                                                    Path(path).parent).as_posix()
            out.append(rec)
    return out


READERS: dict[str, Callable[[DataSpec], Records]] = {
    "coco": _coco,
    "lvis": _lvis,
    "v3det": _v3det,
    "refcoco": _refcoco("refcoco", "refs(unc).p", captions=False),
    "refcoco+": _refcoco("refcoco+", "refs(unc).p", captions=False),
    "refcocog": _refcoco("refcocog", "refs(umd).p", captions=True),
    "vg": _vg,
    "region_captions": _region_captions,
}


def annotation_records(data: DataSpec) -> dict[str, Records]:
    """The records of every reader ``data.annotations`` lists, by reader, each cut to
    ``data.max_records_per_dataset`` when set."""
    unknown = sorted(set(data.annotations) - set(READERS))
    if unknown or not data.annotations:
        raise ValueError(f"data.annotations must list readers among {sorted(READERS)}, "
                         f"got {data.annotations}")
    out = {}
    for name in data.annotations:
        records = READERS[name](data)[: data.max_records_per_dataset]
        if not records:
            raise ValueError(f"reader {name!r} found no records for split "
                             f"{data.annotation_split!r}")
        logger.info("%s: %d records", name, len(records))
        out[name] = records
    return out


def build_parser() -> argparse.ArgumentParser:
    p = config_tool_parser(
        "python -m rgpt_model.training.annotation_source",
        "Write the records a run config's data.annotations readers produce as JSONL files "
        "(one per reader), e.g. to inspect them or to train from them with data.source: jsonl.",
        "override a config key, e.g. --set data.coco_root=/datasets/coco")
    p.add_argument("--out", type=Path, required=True, help="folder for <reader>.jsonl files")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    from rgpt_model.data.jsonl_format import write_jsonl
    from rgpt_model.training.config import load_config

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, args.overrides)
    for name, records in annotation_records(cfg.data).items():
        n = write_jsonl(args.out / f"{name}.jsonl", records, validate=False)
        print(f"{name}: {n} records -> {args.out / f'{name}.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
