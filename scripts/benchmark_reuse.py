#!/usr/bin/env python
"""CPU benchmark of issue 21's model side: answer reuse on slowly moving objects, and one
vision + decoding batch over several frames.

Why: in a video most regions barely change between frames, so decoding their answers again
is wasted; and one batch over several cameras' frames costs less than one call per frame.

1. Reuse: a replayed sequence of objects drifting 1-2 px per frame, appearing and leaving
   (:mod:`rgpt_model.data.moving_scenes`), described frame by frame without reuse (every
   region decoded, today's path) and again with an :class:`~rgpt_model.answer_reuse.AnswerReuse`
   for each ``--reuse`` setting.
   Reported per frame: decoded tokens (greedy steps over all rows, EOS included), LM forward
   passes and model time (encode + describe; CPU time of this process, which other processes
   on a shared machine do not inflate, and wall time); and the agreement of every reused
   answer (label and caption) with the answer decoded for the same region of the same frame
   without reuse.
   Targets: >= 3x fewer decoded tokens, >= 98 % agreement. Also reported: how often the
   model's own answer for a region equals its answer of the frame before (no reuse), which
   bounds the agreement any reuse policy can reach on this video, and the share of labels
   that name the object's true shape with and without reuse (the control that says whether
   reuse costs right answers, not just recomputed ones). Each ``--seeds`` sequence is replayed
   apart, with its own reuse cache, and the figures pool all of them.
2. Batching: frames/s of ``encode_many`` + ``describe_many`` over N frames vs N
   ``encode`` + ``describe`` calls, N = 1, 2, 4 (best CPU time of interleaved repeats; wall-time
   ratio too; answers compared).

Models: ``demo`` (rgpt_model/demo_model) and ``tiny-large`` (random weights with the full
model's sequence geometry, see ``scripts/benchmark_regions.tiny_large_configs``), ``tiny``, or
a model directory. Run it niced on a shared machine::

    nice -n 10 python scripts/benchmark_reuse.py --json docs/benchmarks/reuse_cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rgpt_model.answer_reuse import (  # noqa: E402
    DEFAULT_COSINE_THRESHOLD,
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_MAX_AGE,
    AnswerReuse,
)
from rgpt_model.data.moving_scenes import MovingFrame, moving_sequence  # noqa: E402
from rgpt_model.predictor import RGPTPredictor  # noqa: E402
from scripts.benchmark_regions import load_models  # noqa: E402

DEFAULT_SETTING = f"{DEFAULT_IOU_THRESHOLD},{DEFAULT_COSINE_THRESHOLD},{DEFAULT_MAX_AGE}"


class CountingPredictor(RGPTPredictor):
    """The predictor, counting what its decoder does: rows, greedy steps, LM passes."""

    def __init__(self, predictor: RGPTPredictor) -> None:
        super().__init__(predictor.model, predictor.processor, predictor.device)
        self.rows = self.decoded_tokens = self.lm_passes = 0
        self.model.language_model.register_forward_hook(self._count_pass)

    def _count_pass(self, *_) -> None:
        self.lm_passes += 1

    def reset(self) -> None:
        self.rows = self.decoded_tokens = self.lm_passes = 0

    def generate_from_embeds(self, inputs_embeds, attention_mask, max_new_tokens,
                             should_stop=None, row_groups=None):
        tokens, probs = super().generate_from_embeds(inputs_embeds, attention_mask,
                                                     max_new_tokens, should_stop, row_groups)
        self.rows += len(tokens)
        # a row shorter than the budget stopped on EOS, which was a decoding step too
        self.decoded_tokens += sum(min(len(t) + 1, max_new_tokens) for t in tokens)
        return tokens, probs


# ----------------------------------------------------------------------------- reuse
def replay(pred: CountingPredictor, frames: list[MovingFrame], reuse: AnswerReuse | None,
           options: dict) -> list[dict]:
    """Describe every frame in order (with ``reuse`` or without); per frame what it cost."""
    out = []
    for seq in frames:
        pred.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        frame = pred.encode(seq.image, seq.labels)
        (descs,) = pred.describe_many([frame], reuse=None if reuse is None else [reuse],
                                      **options)
        out.append({"seconds": time.process_time() - c0, "wall": time.perf_counter() - t0,
                    "tokens": pred.decoded_tokens,
                    "rows": pred.rows, "lm_passes": pred.lm_passes, "regions": len(descs),
                    "answers": {d.region_id: (d.label, d.caption, d.reused, d.age)
                                for d in descs},
                    "shapes": {rid: name.split()[-1] for rid, name in seq.names.items()}})
    return out


def replay_all(pred: CountingPredictor, sequences: list[list[MovingFrame]],
               setting: tuple[float, float, int] | None, options: dict) -> list[list[dict]]:
    """:func:`replay` of every sequence, each with a fresh reuse cache (or none)."""
    return [replay(pred, frames, None if setting is None else AnswerReuse(*setting), options)
            for frames in sequences]


def _flat(sequences: list[list[dict]]) -> list[dict]:
    return [run for runs in sequences for run in runs]


def label_accuracy(runs: list[dict]) -> float:
    """Share of answered regions whose label is the object's true shape."""
    right = [answer[0] == run["shapes"].get(rid)
             for run in runs for rid, answer in run["answers"].items()]
    return sum(right) / max(len(right), 1)


def _summary(runs: list[dict]) -> dict:
    n = len(runs)
    return {
        "decoded_tokens_per_frame": sum(r["tokens"] for r in runs) / n,
        "decoded_rows_per_frame": sum(r["rows"] for r in runs) / n,
        "lm_passes_per_frame": sum(r["lm_passes"] for r in runs) / n,
        "model_ms_per_frame_mean": 1e3 * sum(r["seconds"] for r in runs) / n,
        "model_ms_per_frame_median": 1e3 * statistics.median(r["seconds"] for r in runs),
        "wall_ms_per_frame_mean": 1e3 * sum(r["wall"] for r in runs) / n,
        "regions_per_frame": sum(r["regions"] for r in runs) / n,
        "label_accuracy": label_accuracy(runs),
    }


def consistency(sequences: list[list[dict]]) -> float:
    """Share of regions whose decoded answer equals their decoded answer of the frame before
    (both without reuse): how steady the model itself is on these videos. Reused answers
    cannot agree with recomputed ones much more often than this."""
    same = total = 0
    for runs in sequences:
        for before, now in zip(runs, runs[1:], strict=False):
            for rid, answer in now["answers"].items():
                if rid in before["answers"]:
                    total += 1
                    same += answer[:2] == before["answers"][rid][:2]
    return same / max(total, 1)


def agreement(off: list[dict], on: list[dict]) -> dict:
    """How often a reused answer equals the answer decoded for that region and frame."""
    same = {"label_and_caption": 0, "label": 0, "caption": 0}
    ages = []
    for a, b in zip(off, on, strict=True):
        for rid, (label, caption, was_reused, age) in b["answers"].items():
            if was_reused:
                ref_label, ref_caption = a["answers"][rid][:2]
                ages.append(age)
                same["label"] += label == ref_label
                same["caption"] += caption == ref_caption
                same["label_and_caption"] += (label, caption) == (ref_label, ref_caption)
    n = len(ages)
    return {"reused_answers": n, "mean_age_of_reused": statistics.mean(ages) if ages else 0.0,
            **{k: v / max(n, 1) for k, v in same.items()}}


def reuse_benchmark(pred: CountingPredictor, sequences: list[list[MovingFrame]],
                    settings: list[tuple[float, float, int]], options: dict) -> dict:
    """Without reuse, then with each (iou, cosine, max_age) setting, over the same frames."""
    replay(pred, sequences[0][:2], None, options)  # warm-up
    off_sequences = replay_all(pred, sequences, None, options)
    off = _flat(off_sequences)
    s_off = _summary(off)
    out = {"without_reuse": s_off, "model_consistency": consistency(off_sequences),
           "with_reuse": []}
    for iou, cosine, max_age in settings:
        on = _flat(replay_all(pred, sequences, (iou, cosine, max_age), options))
        s_on = _summary(on)
        agree = agreement(off, on)
        out["with_reuse"].append({
            "iou_threshold": iou, "cosine_threshold": cosine, "max_age": max_age, **s_on,
            "decoded_tokens_ratio": s_off["decoded_tokens_per_frame"]
            / max(s_on["decoded_tokens_per_frame"], 1e-9),
            "model_time_ratio": s_off["model_ms_per_frame_mean"]
            / s_on["model_ms_per_frame_mean"],
            "reused_share": agree["reused_answers"] / max(sum(r["regions"] for r in on), 1),
            "agreement": agree,
        })
    return out


# -------------------------------------------------------------------------- batching
def batching_benchmark(pred: RGPTPredictor, frames: list[MovingFrame], sizes: list[int],
                       repeats: int, options: dict) -> dict:
    """Frames/s of one encode_many + describe_many over N frames vs N single-frame calls."""
    picks = {n: [frames[(k * len(frames)) // max(sizes)] for k in range(n)] for n in sizes}

    def batched(n):
        items = [(f.image, f.labels, None) for f in picks[n]]
        return pred.describe_many(pred.encode_many(items), **options)

    def one_by_one(n):
        return [pred.describe(pred.encode(f.image, f.labels), **options) for f in picks[n]]

    calls = {"batched": batched, "one_by_one": one_by_one}
    answers = {(n, name): [[(d.label, d.caption) for d in f] for f in fn(n)]
               for n in sizes for name, fn in calls.items()}  # also the warm-up
    times: dict[tuple[int, str], list[float]] = {}
    walls: dict[tuple[int, str], list[float]] = {}
    for _ in range(repeats):  # interleaved: a burst of load hits both alike
        for n in sizes:
            for name, fn in calls.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn(n)
                times.setdefault((n, name), []).append(time.process_time() - c0)
                walls.setdefault((n, name), []).append(time.perf_counter() - t0)
    out = {}
    for n in sizes:
        fps = {name: n / min(times[n, name]) for name in calls}
        wall = {name: n / min(walls[n, name]) for name in calls}
        out[str(n)] = {
            "regions": sum(len(f.names) for f in picks[n]),
            "frames_per_s_batched": fps["batched"],
            "frames_per_s_one_by_one": fps["one_by_one"],
            "speedup": fps["batched"] / fps["one_by_one"],
            "wall_speedup": wall["batched"] / wall["one_by_one"],
            "same_answers": answers[n, "batched"] == answers[n, "one_by_one"],
        }
    return out


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    arg = ap.add_argument
    arg("--models", nargs="+", default=["demo", "tiny-large"],
        help="demo, tiny, tiny-large or model directories (default: %(default)s)")
    arg("--frames", type=int, default=60, help="frames in the replayed sequence (default: "
        "%(default)s)")
    arg("--height", type=int, default=240, help="frame height in px (default: %(default)s)")
    arg("--width", type=int, default=320, help="frame width in px (default: %(default)s)")
    arg("--objects", type=int, default=6, help="objects over the whole sequence, some "
        "appearing late and some leaving early (default: %(default)s)")
    arg("--seeds", nargs="+", type=int, default=[0, 1, 2], help="one sequence per seed, "
        "each replayed apart, figures pooled (default: %(default)s)")
    arg("--tasks", default="classify,caption", help="describe tasks, comma-separated "
        "(default: %(default)s, the node's default)")
    arg("--max-new-tokens", type=int, default=32, help="token budget per answer (default: "
        "%(default)s, the node's default)")
    arg("--reuse", nargs="+", default=[DEFAULT_SETTING, "0.8,0.95,10", "0.6,0.95,10"],
        metavar="IOU,COSINE,MAX_AGE", help="reuse settings to compare, each against no reuse "
        "(default: %(default)s: the library's and node's default, the default before issue "
        "21's measurement, and a looser IoU with a looser cosine)")
    arg("--batch-sizes", nargs="+", type=int, default=[1, 2, 4], help="N frames per batch in "
        "the batching part (default: %(default)s)")
    arg("--repeats", type=int, default=5, help="timed repeats of the batching part, best "
        "kept (default: %(default)s)")
    arg("--threads", type=int, default=1, help="torch intra-op threads (default: %(default)s, "
        "stable on a shared machine)")
    arg("--json", type=Path, help="write the report here (default: print only)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [_setting(text) for text in args.reuse]
    options = {"tasks": tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
               "max_new_tokens": args.max_new_tokens}
    sequences = [list(moving_sequence(args.frames, args.height, args.width, args.objects,
                                      seed)) for seed in args.seeds]
    frames = [f for seq in sequences for f in seq]
    report: dict = {
        "torch": torch.__version__, "threads": args.threads, "command": sys.argv,
        "sequence": {"frames": args.frames, "height": args.height, "width": args.width,
                     "objects": args.objects, "seeds": args.seeds, "motion_px_per_frame": [1, 2],
                     "regions_per_frame": sum(len(f.names) for f in frames) / len(frames)},
        "options": options,
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, loaded in load_models(args.models, Path(tmp)).items():
            pred = CountingPredictor(loaded)
            entry = {"params_M": round(sum(p.numel() for p in pred.model.parameters()) / 1e6, 2),
                     "reuse": reuse_benchmark(pred, sequences, settings, options),
                     "batching": batching_benchmark(pred, sequences[0], args.batch_sizes,
                                                    args.repeats, options)}
            report["models"][name] = entry
            _print(name, entry)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


def _setting(text: str) -> tuple[float, float, int]:
    try:
        iou, cosine, max_age = text.split(",")
        return float(iou), float(cosine), int(max_age)
    except ValueError as exc:
        raise SystemExit(f"--reuse takes IOU,COSINE,MAX_AGE (e.g. 0.8,0.95,10), got {text!r}"
                         ) from exc


def _print(name: str, entry: dict) -> None:
    r = entry["reuse"]
    off = r["without_reuse"]
    print(f"\n== {name} ({entry['params_M']} M params), {off['regions_per_frame']:.1f} "
          f"regions/frame; the model's own answer equals its previous frame's in "
          f"{100 * r['model_consistency']:.1f} % of regions")
    print(f"{'reuse (iou,cos,age)':22}{'tokens/frame':>13}{'rows/frame':>11}{'LM passes':>10}"
          f"{'ms/frame':>10}{'tokens':>8}{'time':>7}{'reused':>8}{'agree':>7}{'label':>7}"
          f"{'right':>7}")
    print(f"{'off':22}{off['decoded_tokens_per_frame']:13.1f}{off['decoded_rows_per_frame']:11.2f}"
          f"{off['lm_passes_per_frame']:10.1f}{off['model_ms_per_frame_mean']:10.1f}"
          f"{'':44}{100 * off['label_accuracy']:6.1f}%")
    for s in r["with_reuse"]:
        a = s["agreement"]
        name = f"{s['iou_threshold']},{s['cosine_threshold']},{s['max_age']}"
        print(f"{name:22}{s['decoded_tokens_per_frame']:13.1f}{s['decoded_rows_per_frame']:11.2f}"
              f"{s['lm_passes_per_frame']:10.1f}{s['model_ms_per_frame_mean']:10.1f}"
              f"{s['decoded_tokens_ratio']:7.2f}x{s['model_time_ratio']:6.2f}x"
              f"{100 * s['reused_share']:7.1f}%{100 * a['label_and_caption']:6.1f}%"
              f"{100 * a['label']:6.1f}%{100 * s['label_accuracy']:6.1f}%")
    print("targets: tokens >= 3x fewer, agreement >= 98 % (agree: reused vs recomputed label "
          "and caption; label: labels only; right: labels naming the true shape)")
    print(f"{'N':>3}{'batched f/s':>13}{'one by one f/s':>16}{'speed-up':>10} same")
    for n, b in entry["batching"].items():
        print(f"{n:>3}{b['frames_per_s_batched']:13.2f}{b['frames_per_s_one_by_one']:16.2f}"
              f"{b['speedup']:10.2f} {b['same_answers']}")


if __name__ == "__main__":
    raise SystemExit(main())
