"""``python -m rgpt_model.evaluation.evaluate``: JSON report of an RGPT model on region tasks.

Synthetic splits (``--split test --num-scenes N``): region classification accuracy and mAP
(class scores = next-token probabilities of the class names after the classification prompt),
the same accuracy with masks shuffled between the regions of each scene (the mask-sensitivity
check: answers must follow the masks, so accuracy should fall to chance), REC accuracy (all
regions of the scene as candidates, exact region id, correct "none" answers; up to
``--rec-per-kind`` expressions of each kind and subkind per scene), brief captions that name
the right colour, shape and size, and CIDEr/METEOR of brief and detailed captions; whether REC
answers change when the same masks are renumbered; label_score AUROC and calibration error.
``--conditions`` adds the controls and conditions of issue 20 (flat grey image, box and coarse
masks, 4:3 frames, rotation, occlusion, textured backgrounds: ``conditions.py``), each reported
apart, and checks the issue's targets. Every figure carries a 95 % interval.

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
from rgpt_model.data.attributes import SHAPES
from rgpt_model.data.synthetic import SceneConfig
from rgpt_model.encoded_frame import EncodedFrame
from rgpt_model.evaluation import metrics
from rgpt_model.evaluation.calibration import label_score_report
from rgpt_model.evaluation.condition_report import condition_section, rec_section
from rgpt_model.evaluation.condition_run import run_condition
from rgpt_model.evaluation.conditions import CONDITION_NAMES, CONDITIONS, parse_conditions
from rgpt_model.evaluation.intervals import bootstrap_interval, proportion
from rgpt_model.evaluation.targets import check_targets
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
def class_scores(predictor: RGPTPredictor, frame: EncodedFrame,
                 vocabulary: Sequence[str]) -> np.ndarray:
    """(R, C) probabilities of each class name's first token as the answer to the
    classification prompt (renormalised over the classes), one batch per encoded frame
    (``predictor.encode(image, masks)``)."""
    tok = predictor.processor.tokenizer
    first = [tok(" " + v, add_special_tokens=False)["input_ids"][0] for v in vocabulary]
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


def evaluate_synthetic(
    model: str | Path | RGPTPredictor | None,
    split: str = "test",
    num_scenes: int = 100,
    seed: int = 0,
    start: int = 0,
    rec_per_scene: int = 4,
    negatives_per_scene: int = 1,
    rec_per_kind: int = 2,
    detailed: bool = True,
    meteor: bool = True,
    device: str = "cpu",
    progress: bool = True,
    scene_config: SceneConfig | None = None,
    conditions: Sequence[str] = (),
) -> dict:
    """Evaluate on ``num_scenes`` generated scenes of ``split`` (same generator as training).

    The top-level sections are the "exact" condition (default scenes, exact masks); every
    name in ``conditions`` (see :data:`CONDITIONS`) is evaluated on the same scene indices and
    reported apart under "conditions", and the issue-20 targets are checked when any is.
    """
    t0 = time.time()
    predictor = load_predictor(model, device)
    names = parse_conditions(",".join(conditions)) if conditions else ["exact"]
    scorer = getattr(predictor, "class_scores", None)  # test doubles may provide their own
    if scorer is None:
        def scorer(frame, vocab):
            return class_scores(predictor, frame, vocab)
    runs = {}
    for name in names:
        base = name == "exact"
        runs[name] = run_condition(
            predictor, CONDITIONS[name], split=split, seed=seed, start=start,
            num_scenes=num_scenes, base_config=scene_config, rec_per_kind=rec_per_kind,
            class_scores=scorer if base else None, shuffle=base, detailed=base and detailed,
            permute_ids=base, legacy_rec=(rec_per_scene, negatives_per_scene) if base else None,
            progress=progress)
    report = _exact_report(runs["exact"], split, seed, meteor, detailed)
    if len(names) > 1:
        report["conditions"] = {n: condition_section(r, seed) for n, r in runs.items()}
    pooled = [g for n, r in runs.items() if not r.condition.control for g in r.regions]
    report["label_score"] = {
        **label_score_report([g.label_score for g in pooled], [g.correct for g in pooled], seed),
        "conditions": [n for n, r in runs.items() if not r.condition.control]}
    report["seconds"] = round(time.time() - t0, 1)
    report["targets"] = check_targets(report)
    return report


def _exact_report(run, split: str, seed: int, meteor: bool, detailed: bool) -> dict:
    """The report's top-level sections (keys of the issue-4 report, plus 95 % intervals)."""
    regions = run.regions
    vocab = list(SHAPES)
    cls_pred = [g.label for g in regions]
    cls_ref = [g.shape for g in regions]
    scores = np.concatenate(run.score_rows) if run.score_rows else np.zeros((0, len(vocab)))
    labels = [vocab.index(g.shape) for g in regions]
    section = condition_section(run, seed)
    cls = section["classification"]
    shuf_pred = [s[0] for s in run.shuffle]
    shuf = proportion([metrics.normalize_answer(p) == ref for p, ref, _ in run.shuffle])
    legacy = run.legacy_rec
    rec = metrics.rec_accuracy([r.predicted for r in legacy], [r.target for r in legacy])
    legacy_section = rec_section(legacy)
    rec["accuracy_ci95"] = legacy_section["accuracy"]["ci95"]
    rec["by_kind"] = {k: metrics.rec_accuracy([r.predicted for r in legacy if r.kind == k],
                                              [r.target for r in legacy if r.kind == k]
                                              )["accuracy"]
                      for k in sorted({r.kind for r in legacy})}  # kinds, as issue 4 had them
    rec["by_spatial_word"] = {k: v["value"] for k, v in legacy_section["by_spatial_word"].items()}
    rec["note"] = ("the issue-4 sample: up to rec_per_scene positive and negatives_per_scene "
                   "negative expressions per scene (4 and 1 by default) of the default "
                   "generator's kinds; rec_by_kind and conditions.*.rec take every kind and "
                   "subkind alike, unique-subject relations and near misses included")
    cap = section["brief_caption"]
    brief_pred = [g.caption for g in regions]
    brief_ref = [[g.reference] for g in regions]

    def map_of(idx: np.ndarray) -> float:
        return metrics.mean_average_precision(scores[idx], np.asarray(labels)[idx], vocab)["mAP"]

    return {
        "split": split,
        "seed": seed,
        "num_scenes": run.num_scenes,
        "num_regions": len(regions),
        "classification": {
            "accuracy": metrics.classification_accuracy(cls_pred, cls_ref),
            "accuracy_ci95": cls["accuracy"]["ci95"],
            "accuracy_held_out_pairs": cls["held_out_pairs"]["value"],
            "accuracy_held_out_pairs_ci95": cls["held_out_pairs"]["ci95"],
            "accuracy_seen_pairs": cls["seen_pairs"]["value"],
            "accuracy_seen_pairs_ci95": cls["seen_pairs"]["ci95"],
            "mAP": metrics.mean_average_precision(scores, labels, vocab)["mAP"],
            "mAP_ci95": bootstrap_interval(map_of, len(labels), resamples=200, seed=seed)
            if len(scores) == len(labels) and len(labels) else None,
            "chance": 1.0 / len(vocab),
            "vocabulary": vocab,
        },
        "mask_shuffle": {
            "accuracy": shuf["value"],
            "accuracy_ci95": shuf["ci95"],
            "accuracy_vs_shuffled_mask": metrics.classification_accuracy(
                shuf_pred, [s[2] for s in run.shuffle]) if shuf_pred else None,
            "chance": 1.0 / len(vocab),
            "same_shape_rate": float(np.mean([s[1] == s[2] for s in run.shuffle]))
            if run.shuffle else None,
            "num": len(shuf_pred),
            "note": "labels asked with another region's mask; 'accuracy' is against the "
                    "original region's shape (same_shape_rate = share of swaps between two "
                    "objects of the same shape, the expected accuracy of a model that follows "
                    "the masks)",
        },
        "rec": rec,
        "rec_by_kind": section["rec"]["by_kind"],
        "id_permutation": section.get("id_permutation"),
        "brief_caption": {
            "colour_and_shape_accuracy": cap["colour_and_shape"]["value"],
            "colour_and_shape_accuracy_ci95": cap["colour_and_shape"]["ci95"],
            "colour_accuracy": cap["colour"]["value"],
            "colour_accuracy_ci95": cap["colour"]["ci95"],
            "shape_accuracy": cap["shape"]["value"],
            "shape_accuracy_ci95": cap["shape"]["ci95"],
            "size_accuracy": cap["size"]["value"],
            "size_accuracy_ci95": cap["size"]["ci95"],
            "exact_match": float(np.mean([metrics.normalize_answer(p)
                                          == metrics.normalize_answer(r[0])
                                          for p, r in zip(brief_pred, brief_ref, strict=True)]))
            if brief_pred else None,
            **_captions(brief_pred, brief_ref, meteor),
        },
        "detailed_caption": _captions([d[0] for d in run.detail], [[d[1]] for d in run.detail],
                                      meteor) if detailed else None,
        "examples": [{"brief": p, "reference": r[0]} for p, r in
                     list(zip(brief_pred, brief_ref, strict=True))[:5]],
    }


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
                    "REC accuracy by kind, id-permutation check, label-score AUROC and "
                    "calibration, caption CIDEr/METEOR; controls and conditions of issue 20 "
                    "reported apart, targets checked) and print a JSON report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", type=Path, default=None,
                   help="model directory (default: the built-in demo model)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--split", choices=("train", "val", "test"), default="test",
                     help="synthetic split to generate and evaluate on")
    src.add_argument("--jsonl", type=Path, default=None,
                     help="evaluate a JSONL region-instruction file instead")
    p.add_argument("--num-scenes", type=int, default=100,
                   help="synthetic scenes to evaluate per condition (200 for the full report)")
    p.add_argument("--start", type=int, default=0, help="index of the first synthetic scene")
    p.add_argument("--conditions", default="all",
                   help="comma list of conditions besides 'exact', 'all' or 'none'; known: "
                        + ", ".join(CONDITION_NAMES))
    p.add_argument("--rec-per-kind", type=int, default=2,
                   help="referring expressions per kind and subkind per scene")
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
        try:
            conditions = parse_conditions(args.conditions)
        except ValueError as exc:
            raise SystemExit(f"--conditions: {exc}") from exc
        report = evaluate_synthetic(args.model, args.split, args.num_scenes, args.seed,
                                    args.start, rec_per_kind=args.rec_per_kind,
                                    detailed=not args.no_detailed, meteor=not args.no_meteor,
                                    device=args.device, progress=not args.no_progress,
                                    conditions=conditions)
    print(write_report(report, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
