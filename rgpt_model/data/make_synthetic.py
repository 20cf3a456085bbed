"""Write a synthetic region-instruction dataset: PNG images, 16-bit label PNGs, JSONL splits.

Usage: ``python -m rgpt_model.data.make_synthetic --out data/synthetic --train 2000``.
Layout under --out::

    images/<split>/<index>.png   RGB scene
    labels/<split>/<index>.png   16-bit instance label image (0 = background, ids 1..N)
    <split>.jsonl                region-instruction records (docs/DATA_FORMAT.md)
    scenes_<split>.jsonl         full scene annotations (regions, captions, expressions)
    meta.json                    generator settings, vocabulary, held-out pairs
    words.txt                    every word used in the records (for word-level tokenizers)
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from rgpt_model.data.attributes import COLOURS, HELD_OUT_PAIRS, SHAPES, SIZES
from rgpt_model.data.jsonl_format import write_jsonl, write_label_png
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.data.synthetic_records import SYNTHETIC_TASKS, RecordConfig, scene_to_records

log = logging.getLogger(__name__)
_WORD_RE = re.compile(r"\w+|[^\w\s]")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rgpt_model.data.make_synthetic",
        description="Write a seeded synthetic shapes dataset (images, label PNGs, JSONL). "
        "The same arguments always give byte-identical files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--seed", type=int, default=0, help="global random seed")
    p.add_argument("--train", type=int, default=1000, help="number of training scenes")
    p.add_argument(
        "--val",
        type=int,
        default=100,
        help="number of validation scenes (seen colour-shape pairs only)",
    )
    p.add_argument(
        "--test",
        type=int,
        default=100,
        help="number of test scenes (each has at least one held-out pair)",
    )
    p.add_argument("--height", type=int, default=128, help="image height in pixels")
    p.add_argument("--width", type=int, default=128, help="image width in pixels")
    p.add_argument("--min-objects", type=int, default=2, help="fewest objects per scene")
    p.add_argument("--max-objects", type=int, default=6, help="most objects per scene")
    p.add_argument(
        "--refer-per-scene",
        type=int,
        default=4,
        help="positive referring-expression records per scene",
    )
    p.add_argument(
        "--negatives-per-scene",
        type=int,
        default=1,
        help="referring records per scene whose answer is 'No corresponding options found.'",
    )
    p.add_argument(
        "--tasks",
        default=",".join(SYNTHETIC_TASKS),
        help="comma-separated tasks to write, from: " + ", ".join(SYNTHETIC_TASKS),
    )
    p.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bar")
    p.add_argument("--log-level", default="INFO", help="logging level")
    return p


def write_split(
    out: Path,
    split: str,
    count: int,
    seed: int,
    scene_cfg: SceneConfig,
    rec_cfg: RecordConfig,
    progress: bool = True,
) -> list[dict]:
    """Render ``count`` scenes of ``split`` under ``out``; returns the records written."""
    records: list[dict] = []
    scenes: list[dict] = []
    for i in tqdm(range(count), desc=split, disable=not progress, unit="scene"):
        scene = generate_scene(seed, i, split, scene_cfg)
        img_rel = f"images/{split}/{i:06d}.png"
        lab_rel = f"labels/{split}/{i:06d}.png"
        (out / img_rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene.image).save(out / img_rel)
        write_label_png(out / lab_rel, scene.labels)
        records += scene_to_records(scene, img_rel, lab_rel, rec_cfg)
        scenes.append({"image": img_rel, "labels": lab_rel, **scene.to_json()})
    write_jsonl(out / f"{split}.jsonl", records)
    write_jsonl(out / f"scenes_{split}.jsonl", scenes, validate=False)
    return records


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    bad = [t for t in tasks if t not in SYNTHETIC_TASKS]
    if bad:
        raise SystemExit(f"unknown tasks {bad}; choose from {SYNTHETIC_TASKS}")
    scene_cfg = SceneConfig(
        height=args.height,
        width=args.width,
        min_objects=args.min_objects,
        max_objects=args.max_objects,
    )
    rec_cfg = RecordConfig(
        tasks=tasks,
        refer_per_scene=args.refer_per_scene,
        negatives_per_scene=args.negatives_per_scene,
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    words: set[str] = set()
    counts = {}
    for split, n in (("train", args.train), ("val", args.val), ("test", args.test)):
        recs = write_split(out, split, n, args.seed, scene_cfg, rec_cfg, not args.no_progress)
        counts[split] = {"scenes": n, "records": len(recs)}
        for r in recs:
            for turn in r["conversations"]:
                words.update(w for w in _WORD_RE.findall(turn["value"].lower()))
    words = {w for w in words if not w.startswith("region") or w == "region"}
    (out / "words.txt").write_text("\n".join(sorted(words)) + "\n", encoding="utf-8")
    meta = {
        "seed": args.seed,
        "scene_config": asdict(scene_cfg),
        "record_config": asdict(rec_cfg),
        "shapes": list(SHAPES),
        "colours": COLOURS,
        "sizes": list(SIZES),
        "held_out_pairs": [list(p) for p in HELD_OUT_PAIRS],
        "counts": counts,
    }
    (out / "meta.json").write_text(
        json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    log.info("synthetic dataset in %s: %s", out, counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
