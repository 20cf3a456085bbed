"""``python -m rgpt_model.evaluation.evaluate``: JSON report of an RGPT model on region tasks.

Synthetic splits (``--split test --num-scenes N``): region classification accuracy and mAP
(class scores = next-token probabilities of the class names after the classification prompt),
the same accuracy with masks shuffled between the regions of each scene (the mask-sensitivity
check: answers must follow the masks, so accuracy should fall to chance), REC accuracy (all
regions of the scene as candidates, exact region id, correct "none" answers), brief captions
that name the right colour and shape, and CIDEr/METEOR of brief and detailed captions.

Any JSONL region-instruction file (``--jsonl FILE``): every record's first human turn is asked
and its answer scored by task (classify: accuracy over the labels of the file, refer: REC
accuracy, captions: CIDEr/METEOR, short_answer: exact match).

Everything runs through :class:`rgpt_model.predictor.RGPTPredictor`, the API the node uses.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rgpt_model import build, prompts
from rgpt_model.data.attributes import HELD_OUT_PAIRS, SHAPES
from rgpt_model.data.expressions import spatial_word
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.evaluation import metrics
from rgpt_model.predictor import RGPTPredictor

logger = logging.getLogger(__name__)


def load_predictor(model: str | Path | RGPTPredictor | None, device: str = "cpu"
                   ) -> RGPTPredictor:
    """``rgpt_model.build.load_predictor`` in float32 (None = the built-in default model);
    a predictor passed in (or a test double with its methods) is used as it is."""
    if isinstance(model, RGPTPredictor) or hasattr(model, "describe"):
        return model
    return build.load_predictor(model, device=device, dtype="float32")


@torch.no_grad()
def class_scores(predictor: RGPTPredictor, image: np.ndarray, masks: np.ndarray,
                 vocabulary: Sequence[str]) -> np.ndarray:
    """(R, C) probabilities of each class name's first token as the answer to the
    classification prompt (renormalised over the classes), one batch per image."""
    tok = predictor.processor.tokenizer
    first = [tok(" " + v, add_special_tokens=False)["input_ids"][0] for v in vocabulary]
    frame = predictor.encode(image, masks)
    n = len(frame.region_ids)
    q = prompts.generation_prompt(prompts.classification_prompt(1, vocabulary))
    enc = predictor.processor.tokenize([q] * n, [[i] for i in range(n)])
    dev = predictor.device
    embeds = predictor.model.merge_embeddings(enc["input_ids"].to(dev), frame.global_embeds,
                                              frame.region_embeds,
                                              enc["region_feature_index"].to(dev))
    logits = predictor.model.language_model(
        inputs_embeds=embeds, attention_mask=enc["attention_mask"].to(dev)).logits[:, -1]
    return logits[:, first].float().softmax(-1).cpu().numpy()


def _derangement(n: int, rng: np.random.Generator) -> list[int]:
    if n < 2:
        return list(range(n))
    while True:
        p = [int(i) for i in rng.permutation(n)]
        if all(p[i] != i for i in range(n)):
            return p


def evaluate_synthetic(
    model: str | Path | RGPTPredictor | None,
    split: str = "test",
    num_scenes: int = 100,
    seed: int = 0,
    start: int = 0,
    rec_per_scene: int = 4,
    negatives_per_scene: int = 1,
    detailed: bool = True,
    meteor: bool = True,
    device: str = "cpu",
    progress: bool = True,
    scene_config: SceneConfig | None = None,
) -> dict:
    """Evaluate on ``num_scenes`` generated scenes of ``split`` (same generator as training)."""
    predictor = load_predictor(model, device)
    scfg = scene_config or SceneConfig()
    vocab = list(SHAPES)
    held = set(HELD_OUT_PAIRS)
    cls_pred, cls_ref, cls_held, score_rows, label_idx = [], [], [], [], []
    shuf_pred, shuf_ref, shuf_mask_ref = [], [], []
    brief_pred, brief_ref, brief_ok, brief_size_ok = [], [], [], []
    brief_colour_ok, brief_shape_ok = [], []
    detail_pred, detail_ref = [], []
    rec_pred, rec_tgt, rec_kind, rec_word = [], [], [], []
    t0 = time.time()
    for i in tqdm(range(start, start + num_scenes), desc=f"eval {split}", disable=not progress,
                  unit="scene"):
        scene = generate_scene(seed, i, split, scfg)
        ids = [r.id for r in scene.regions]
        masks = np.stack([scene.labels == rid for rid in ids])
        rng = np.random.default_rng([seed, i, 99])
        # classification (+ scores for mAP)
        desc = predictor.describe(scene.image, masks, tasks=("classify",), vocabulary=vocab,
                                  max_new_tokens=4)
        for r, d in zip(scene.regions, desc, strict=True):
            cls_pred.append(d.label)
            cls_ref.append(r.shape)
            cls_held.append((r.colour, r.shape) in held)
            label_idx.append(vocab.index(r.shape))
        scorer = getattr(predictor, "class_scores", None)  # test doubles may provide their own
        score_rows.append(scorer(scene.image, masks, vocab) if scorer is not None
                          else class_scores(predictor, scene.image, masks, vocab))
        # mask sensitivity: each region is asked about with another region's mask
        perm = _derangement(len(ids), rng)
        if len(ids) >= 2:
            shuffled = predictor.describe(scene.image, masks[perm], tasks=("classify",),
                                          vocabulary=vocab, max_new_tokens=4)
            for k, d in enumerate(shuffled):
                shuf_pred.append(d.label)
                shuf_ref.append(scene.regions[k].shape)
                shuf_mask_ref.append(scene.regions[perm[k]].shape)
        # captions
        tasks = ("caption", "detailed_caption") if detailed else ("caption",)
        for task in tasks:
            out = predictor.describe(scene.image, masks, tasks=(task,), max_new_tokens=40)
            for r, d in zip(scene.regions, out, strict=True):
                if task == "caption":
                    words = set(metrics.normalize_answer(d.caption).split())
                    brief_pred.append(d.caption)
                    brief_ref.append([r.brief_caption])
                    brief_ok.append(r.colour in words and r.shape in words)
                    brief_size_ok.append(r.size in words)
                    brief_colour_ok.append(r.colour in words)
                    brief_shape_ok.append(r.shape in words)
                else:
                    detail_pred.append(d.caption)
                    detail_ref.append([r.detail_caption])
        # REC: all regions are candidates, in a random order
        pos = [e for e in scene.expressions if e.target_ids]
        neg = [e for e in scene.expressions if not e.target_ids]
        chosen = []
        for pool, k in ((pos, rec_per_scene), (neg, negatives_per_scene)):
            if pool and k > 0:
                idx = rng.choice(len(pool), size=min(k, len(pool)), replace=False)
                chosen += [pool[int(j)] for j in sorted(idx)]
        for e in chosen:
            order = [ids[int(j)] for j in rng.permutation(len(ids))]
            res = predictor.refer(scene.image, scene.labels, e.text, region_ids=order)
            rec_pred.append(res.matched_ids)
            rec_tgt.append(list(e.target_ids))
            rec_kind.append(e.kind)
            word = spatial_word(e)
            rec_word.append(f"{e.kind}: {word}" if word else None)
    seconds = time.time() - t0
    scores = np.concatenate(score_rows) if score_rows else np.zeros((0, len(vocab)))
    held_mask = np.asarray(cls_held, bool)
    correct = np.asarray([p == r for p, r in zip(cls_pred, cls_ref, strict=True)], bool)
    same_shape = [a == b for a, b in zip(shuf_ref, shuf_mask_ref, strict=True)]

    def rec_accuracy_by(keys: list[str | None]) -> dict[str, float]:
        out = {}
        for key in sorted({k for k in keys if k is not None}):
            sel = [j for j, k in enumerate(keys) if k == key]
            out[key] = metrics.rec_accuracy([rec_pred[j] for j in sel],
                                            [rec_tgt[j] for j in sel])["accuracy"]
        return out

    rec = metrics.rec_accuracy(rec_pred, rec_tgt)
    rec["by_kind"] = rec_accuracy_by(rec_kind)
    rec["by_spatial_word"] = rec_accuracy_by(rec_word)
    report = {
        "split": split,
        "seed": seed,
        "num_scenes": num_scenes,
        "num_regions": len(cls_ref),
        "classification": {
            "accuracy": metrics.classification_accuracy(cls_pred, cls_ref),
            "accuracy_held_out_pairs": float(correct[held_mask].mean()) if held_mask.any()
            else None,
            "accuracy_seen_pairs": float(correct[~held_mask].mean()) if (~held_mask).any()
            else None,
            "mAP": metrics.mean_average_precision(scores, label_idx, vocab)["mAP"],
            "chance": 1.0 / len(vocab),
            "vocabulary": vocab,
        },
        "mask_shuffle": {
            "accuracy": metrics.classification_accuracy(shuf_pred, shuf_ref)
            if shuf_pred else None,
            "accuracy_vs_shuffled_mask": metrics.classification_accuracy(shuf_pred, shuf_mask_ref)
            if shuf_pred else None,
            "chance": 1.0 / len(vocab),
            "same_shape_rate": float(np.mean(same_shape)) if same_shape else None,
            "num": len(shuf_pred),
            "note": "labels asked with another region's mask; 'accuracy' is against the "
                    "original region's shape (same_shape_rate = share of swaps between two "
                    "objects of the same shape, the expected accuracy of a model that follows "
                    "the masks)",
        },
        "rec": rec,
        "brief_caption": {
            "colour_and_shape_accuracy": float(np.mean(brief_ok)) if brief_ok else None,
            "colour_accuracy": float(np.mean(brief_colour_ok)) if brief_colour_ok else None,
            "shape_accuracy": float(np.mean(brief_shape_ok)) if brief_shape_ok else None,
            "size_accuracy": float(np.mean(brief_size_ok)) if brief_size_ok else None,
            "exact_match": float(np.mean([metrics.normalize_answer(p)
                                          == metrics.normalize_answer(r[0])
                                          for p, r in zip(brief_pred, brief_ref, strict=True)]))
            if brief_pred else None,
            **_captions(brief_pred, brief_ref, meteor),
        },
        "detailed_caption": _captions(detail_pred, detail_ref, meteor) if detailed else None,
        "examples": [{"brief": p, "reference": r[0]} for p, r in
                     list(zip(brief_pred, brief_ref, strict=True))[:5]],
        "seconds": round(seconds, 1),
    }
    report["targets"] = check_targets(report)
    return report


TARGETS = {"classification_accuracy": 0.95, "rec_accuracy": 0.90,
           "brief_colour_and_shape_accuracy": 0.90}


def check_targets(report: dict) -> dict:
    """The demo model's targets (issue 4) against a synthetic report."""
    got = {
        "classification_accuracy": report["classification"]["accuracy"],
        "rec_accuracy": report["rec"]["accuracy"],
        "brief_colour_and_shape_accuracy": report["brief_caption"]["colour_and_shape_accuracy"],
    }
    out = {k: {"value": got[k], "target": t, "met": got[k] is not None and got[k] >= t}
           for k, t in TARGETS.items()}
    sh = report["mask_shuffle"]
    if sh["accuracy"] is not None:
        near_chance = sh["accuracy"] <= max(sh["same_shape_rate"] or 0.0, sh["chance"]) + 0.1
        out["mask_shuffle_near_chance"] = {"value": sh["accuracy"], "met": bool(near_chance)}
    out["all_met"] = all(v["met"] for v in out.values())
    return out


def _captions(pred: list[str], refs: list[list[str]], meteor: bool) -> dict:
    if not pred:
        return {"CIDEr": None, "METEOR": None, "num": 0}
    m = metrics.caption_metrics(pred, refs, meteor=meteor)
    return {"CIDEr": m["CIDEr"], "METEOR": m["METEOR"], "num": m["num"],
            "notes": m.get("notes", [])}


def evaluate_jsonl(model: str | Path | RGPTPredictor | None, path: str | Path,
                   limit: int | None = None, meteor: bool = True, device: str = "cpu",
                   progress: bool = True) -> dict:
    """Evaluate the records of a JSONL region-instruction file (first turn of each)."""
    from rgpt_model.data.jsonl_format import load_jsonl, load_record

    predictor = load_predictor(model, device)
    path = Path(path)
    records = load_jsonl(path)[:limit] if limit else load_jsonl(path)
    vocab = sorted({r["conversations"][1]["value"] for r in records if r["task"] == "classify"})
    by_task: dict[str, dict[str, list]] = {}
    t0 = time.time()
    for rec in tqdm(records, desc=f"eval {path.name}", disable=not progress, unit="rec"):
        image, masks = load_record(rec, path.parent)
        question = rec["conversations"][0]["value"].replace(prompts.IMAGE_TOKEN, "").strip() \
            if hasattr(prompts, "IMAGE_TOKEN") else rec["conversations"][0]["value"]
        reference = rec["conversations"][1]["value"]
        answer = predictor.ask(image, masks, question, max_new_tokens=48)
        slot = by_task.setdefault(rec["task"], {"pred": [], "ref": []})
        slot["pred"].append(answer)
        slot["ref"].append(reference)
    out: dict = {"jsonl": str(path), "num_records": len(records), "tasks": {}}
    for task, d in by_task.items():
        if task == "classify":
            pred = [prompts.parse_classification_answer(a, vocab).label for a in d["pred"]]
            out["tasks"][task] = {"accuracy": metrics.classification_accuracy(pred, d["ref"]),
                                  "num": len(pred), "vocabulary_size": len(vocab)}
        elif task == "refer":
            out["tasks"][task] = metrics.rec_accuracy(
                [prompts.parse_rec_answer(a) for a in d["pred"]],
                [prompts.parse_rec_answer(r) for r in d["ref"]])
        elif task in ("caption_brief", "caption_detail", "free"):
            out["tasks"][task] = _captions(d["pred"], [[r] for r in d["ref"]], meteor)
        else:
            hits = [metrics.normalize_answer(a) == metrics.normalize_answer(r)
                    for a, r in zip(d["pred"], d["ref"], strict=True)]
            out["tasks"][task] = {"accuracy": float(np.mean(hits)) if hits else None,
                                  "num": len(hits)}
    out["seconds"] = round(time.time() - t0, 1)
    return out


def write_report(report: dict, path: str | Path | None) -> str:
    """JSON text of the report; also written to ``path`` when given."""
    text = json.dumps(report, indent=2, sort_keys=False, default=float)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rgpt_model.evaluation.evaluate",
        description="Evaluate an RGPT model (classification accuracy/mAP, mask-shuffle check, "
                    "REC accuracy, caption CIDEr/METEOR) and print a JSON report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", type=Path, default=None,
                   help="model directory (default: the built-in demo model)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--split", choices=("train", "val", "test"), default="test",
                     help="synthetic split to generate and evaluate on")
    src.add_argument("--jsonl", type=Path, default=None,
                     help="evaluate a JSONL region-instruction file instead")
    p.add_argument("--num-scenes", type=int, default=100, help="synthetic scenes to evaluate")
    p.add_argument("--start", type=int, default=0, help="index of the first synthetic scene")
    p.add_argument("--seed", type=int, default=0, help="synthetic generator seed")
    p.add_argument("--limit", type=int, default=None, help="at most this many JSONL records")
    p.add_argument("--no-detailed", action="store_true", help="skip detailed captions")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (needs Java)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is fastest on a shared CPU)")
    p.add_argument("--out", type=Path, default=None, help="also write the report here")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--log-level", default="WARNING", help="logging level")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the JSON report."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    if args.jsonl is not None:
        report = evaluate_jsonl(args.model, args.jsonl, args.limit, not args.no_meteor,
                                args.device, not args.no_progress)
    else:
        report = evaluate_synthetic(args.model, args.split, args.num_scenes, args.seed,
                                    args.start, detailed=not args.no_detailed,
                                    meteor=not args.no_meteor, device=args.device,
                                    progress=not args.no_progress)
    print(write_report(report, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
