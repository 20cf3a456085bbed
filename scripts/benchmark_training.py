#!/usr/bin/env python
"""Training throughput and memory of the trainer on one process and many (random weights,
synthetic scenes, no downloads).

Why: the distributed trainer must earn its keep (samples/s that grow with processes) and
gradient checkpointing must buy memory back; both are ratios that hold on any machine.

CPU mode (default: ``--device cpu --geometry tiny-large``) trains the same run, each in a
child process of its own so that each peak memory is its run's alone:

- on 1 process (strategy single) and on 2 (torchrun, DDP, gloo): samples/s and their ratio;
- on 1 process without and with gradient checkpointing: peak RSS (``resource.getrusage``)
  and its ratio, also counted above the RSS at the start of training (weights and imports
  are the same in both).

It writes ``docs/benchmarks/training_cpu.json``. The CPU may be shared with other work: run it
under ``nice`` and read the ratios, not the absolute rates.

GPU mode (``--device cuda --geometry rgpt7b``): a few steps of the RGPT-7B geometry (CLIP
ViT-L/14-336 + Vicuna-7B shapes, 32000-token vocabulary, random weights) with FSDP, bf16 and
gradient checkpointing on one GPU (a one-process group), or on every GPU of a ``torchrun``;
reports tokens/s (all input tokens, image tokens included), samples/s and
``torch.cuda.max_memory_allocated``, next to the planner's estimate
(``rgpt_model.training.plan``), in ``docs/benchmarks/training_gpu_rgpt7b.json``.
``--single-run`` runs that mode on the CPU (the tests: ``--geometry tiny``).

``--dry-run`` builds the geometry on PyTorch's meta device and prints its sizes, no training.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from benchmark_gpu import VICUNA_7B  # noqa: E402
from benchmark_regions import build_random_rgpt  # noqa: E402

from rgpt_model.config import CLIP_L_336  # noqa: E402
from rgpt_model.tiny import TINY_TEXT, TINY_VISION  # noqa: E402
from rgpt_model.training.config import DataSpec, StageSpec, TrainConfig  # noqa: E402

# (vision config, text config, LM vocabulary (None: the word tokenizer's), image side)
GEOMETRIES = {
    "tiny": (TINY_VISION, TINY_TEXT, None, 32),
    "tiny-large": ({"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4,
                    "num_attention_heads": 4, "image_size": 128, "patch_size": 8,
                    "projection_dim": 128},
                   {"hidden_size": 384, "intermediate_size": 1024, "num_hidden_layers": 6,
                    "num_attention_heads": 6, "num_key_value_heads": 6,
                    "max_position_embeddings": 2048}, None, 128),
    "rgpt7b": (CLIP_L_336, VICUNA_7B, 32000, 336),
}
STAGES = {  # what trains: the paper's stage 1, stage 2 with LoRA, stage 2 in full
    "stage1": {"train": ["refiner", "connector"], "lm_mode": "frozen"},
    "stage2-lora": {"train": ["refiner", "connector", "lm"], "lm_mode": "lora"},
    "stage2-full": {"train": ["vision", "refiner", "connector", "lm"], "lm_mode": "full"},
}
CPU_JSON = ROOT / "docs" / "benchmarks" / "training_cpu.json"
GPU_JSON = ROOT / "docs" / "benchmarks" / "training_gpu_rgpt7b.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/benchmark_training.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu: 1 vs 2 processes and checkpointing off vs on; cuda: one "
                        "FSDP + bf16 + checkpointing run of --geometry")
    p.add_argument("--geometry", choices=sorted(GEOMETRIES), default=None,
                   help="model shapes (default: tiny-large on the CPU, rgpt7b on CUDA)")
    p.add_argument("--stage", choices=sorted(STAGES), default=None,
                   help="what trains (default: stage2-full on the CPU, stage2-lora on CUDA: "
                        "full 7B training needs ~110 GB of weights, gradients and AdamW "
                        "state on one GPU)")
    p.add_argument("--steps", type=int, default=4, help="measured optimizer steps")
    p.add_argument("--warmup-steps", type=int, default=1, help="steps run before measuring")
    p.add_argument("--images-per-step", type=int, default=8,
                   help="global micro-batch (split over the processes)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step")
    p.add_argument("--max-turns", type=int, default=4, help="question/answer turns per image")
    p.add_argument("--processes", default="1,2",
                   help="CPU mode: process counts to compare (the first is the baseline)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--strategy", choices=("single", "ddp", "fsdp"), default="fsdp",
                   help="CUDA mode's strategy (CPU mode: single for 1 process, ddp beyond)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                   help="default: fp32 on the CPU, bf16 on CUDA")
    p.add_argument("--json", type=Path, default=None,
                   help=f"report path (default {CPU_JSON.relative_to(ROOT)} or "
                        f"{GPU_JSON.relative_to(ROOT)})")
    p.add_argument("--single-run", action="store_true",
                   help="one run of --strategy/--precision with checkpointing in this process, "
                        "as --device cuda does (on the CPU: its test with --geometry tiny)")
    p.add_argument("--dry-run", action="store_true",
                   help="build the geometry on the meta device, print its sizes, exit")
    p.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    return p


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    cuda = args.device == "cuda"
    args.single_run = args.single_run or cuda
    args.geometry = args.geometry or ("rgpt7b" if cuda else "tiny-large")
    args.stage = args.stage or ("stage2-lora" if cuda else "stage2-full")
    args.precision = args.precision or ("bf16" if cuda else "fp32")
    args.json = args.json or (GPU_JSON if cuda else CPU_JSON)
    return args


def train_config(args: argparse.Namespace, strategy: str, checkpointing: bool,
                 output_dir: str) -> TrainConfig:
    """The run: one stage of ``--stage``, synthetic scenes at the geometry's image size."""
    side = GEOMETRIES[args.geometry][3]
    steps = args.warmup_steps + args.steps
    stage = StageSpec(name=args.stage, steps=steps, lr=1e-4, warmup_steps=0, **STAGES[args.stage])
    return TrainConfig(
        output_dir=output_dir, device=args.device, num_threads=args.threads,
        images_per_step=args.images_per_step, grad_accum=args.grad_accum, save_every=0,
        log_every=1, strategy=strategy, precision=args.precision,
        gradient_checkpointing=checkpointing, stages=[stage],
        data=DataSpec(image_height=side, image_width=side, max_turns=args.max_turns))


def build_geometry(name: str, device: str = "cpu"):
    """Random-weight model + processor of geometry ``name``, float32 master weights."""
    vision, text, vocab, side = GEOMETRIES[name]
    return build_random_rgpt(vision, text, vocab_size=vocab, device=device, image_size=side,
                             patch_merge_factor=2)


def dry_run(args: argparse.Namespace) -> dict:
    """The geometry's sizes, from a model on the meta device (no memory, no training)."""
    model, processor = build_geometry(args.geometry, device="meta")
    cfg = train_config(args, args.strategy, True, "unused")

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    return {"geometry": args.geometry, "stage": args.stage, "parameters": count(model),
            "vision_parameters": count(model.vision_tower),
            "lm_parameters": count(model.language_model),
            "global_tokens": processor.num_global_tokens,
            "decoder_layers": model.config.text_config.num_hidden_layers,
            "train_config": cfg.to_dict()}


def cpu_seconds() -> float:
    """CPU time this process used so far (user + system): on a shared CPU, samples per CPU
    second say what a process costs, whatever share of the cores it got."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(args: argparse.Namespace) -> dict:
    """Train warm-up + measured steps in this process (one rank of a torchrun, maybe)."""
    from rgpt_model.training.trainer import Trainer

    strategy = args.strategy if args.single_run else (
        "ddp" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "single")
    with tempfile.TemporaryDirectory() as out:
        cfg = train_config(args, strategy, args.checkpointing, out)
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if args.device == "cuda" else "cpu"
        model, processor = build_geometry(args.geometry, device=device)
        trainer = Trainer(cfg, model, processor, progress=False)
        cuda = trainer.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(trainer.device)
        rss_start, cpu_start = peak_rss_mb(), cpu_seconds()
        trainer.train(checkpoint_at_end=False)
        rss_peak, cpu_used = peak_rss_mb(), cpu_seconds() - cpu_start
        measured = range(args.warmup_steps, cfg.total_steps)
        tokens = sum(int(b["attention_mask"].sum()) for s in measured
                     for b, _ in trainer.batches.step(s))
        elapsed = [h["elapsed_s"] for h in trainer.history]
        seconds = elapsed[-1] - (elapsed[args.warmup_steps - 1] if args.warmup_steps else 0.0)
        procs = trainer.procs
        total_tokens, peaks, cpu = (procs.sum_or_fail([tokens]), procs.sum_or_fail([rss_peak]),
                                    procs.sum_or_fail([cpu_used]))
        result = {
            "processes": procs.world_size, "strategy": strategy,
            "gradient_checkpointing": args.checkpointing, "precision": args.precision,
            "measured_steps": args.steps, "seconds": seconds,
            "samples_per_s": args.steps * args.images_per_step * args.grad_accum / seconds,
            "tokens_per_s": total_tokens[0] / seconds,
            "step_s": seconds / args.steps, "final_loss": trainer.history[-1]["loss"],
            # all steps (warm-up included), all ranks
            "samples_per_cpu_s": cfg.total_steps * args.images_per_step * args.grad_accum
            / cpu[0],
            "peak_rss_mb": rss_peak, "mean_peak_rss_mb_over_ranks": peaks[0] / procs.world_size,
            "rss_at_start_mb": rss_start, "rss_training_mb": rss_peak - rss_start,
            "parameters": sum(p.numel() for p in model.parameters()),  # DTensors: global
            "trainable_parameters": sum(p.numel() for p in model.parameters()
                                        if p.requires_grad),
        }
        if cuda:
            result["peak_allocated_gb"] = torch.cuda.max_memory_allocated(trainer.device) / 1e9
            result["peak_reserved_gb"] = torch.cuda.max_memory_reserved(trainer.device) / 1e9
            result["gpu"] = torch.cuda.get_device_name(trainer.device)
        trainer.close()
    if procs.is_main:
        args.worker.write_text(json.dumps(result) + "\n")
    return result


def child_run(args: argparse.Namespace, processes: int, checkpointing: bool) -> dict:
    """One CPU measurement in its own process(es); its worker's JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        worker = [str(Path(__file__).resolve()), "--worker", str(out), "--device", "cpu",
                  "--geometry", args.geometry, "--stage", args.stage, "--steps", str(args.steps),
                  "--warmup-steps", str(args.warmup_steps), "--images-per-step",
                  str(args.images_per_step), "--grad-accum", str(args.grad_accum),
                  "--max-turns", str(args.max_turns), "--threads", str(args.threads),
                  "--precision", args.precision]
        if checkpointing:
            worker.append("--checkpointing")
        if processes == 1:
            cmd = [sys.executable, *worker]
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                   str(processes), "--master_addr", "127.0.0.1", "--master_port", str(port),
                   *worker]
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        if done.returncode != 0:
            raise RuntimeError(f"benchmark run failed: {' '.join(cmd)}\n{done.stdout[-4000:]}")
        return json.loads(out.read_text())


def cpu_report(args: argparse.Namespace) -> dict:
    counts = [int(n) for n in args.processes.split(",")]
    scaling = [child_run(args, n, False) for n in counts]
    checkpointed = child_run(args, counts[0], True)
    base = scaling[0]
    return {
        "scaling": scaling, "checkpointing": [base, checkpointed],
        "samples_per_s_ratio": {str(r["processes"]): r["samples_per_s"] / base["samples_per_s"]
                                for r in scaling},
        "samples_per_cpu_s_ratio": {str(r["processes"]):
                                    r["samples_per_cpu_s"] / base["samples_per_cpu_s"]
                                    for r in scaling},
        "peak_rss_ratio_with_checkpointing": checkpointed["peak_rss_mb"] / base["peak_rss_mb"],
        # None when training never rose above the start's peak (tiny models)
        "training_rss_ratio_with_checkpointing": (
            checkpointed["rss_training_mb"] / base["rss_training_mb"]
            if base["rss_training_mb"] > 0 else None),
    }


def planner_estimate(args: argparse.Namespace, result: dict) -> dict:
    """The planner's per-GPU memory and throughput for the same run (paper geometry)."""
    try:
        from rgpt_model.training.plan import make_plan

        cfg = train_config(args, args.strategy, True, "unused")
        cfg.model.source, cfg.model.path = "llava", "/nonexistent"  # -> the paper's geometry
        samples = args.steps * args.images_per_step * args.grad_accum
        seq = round(result["tokens_per_s"] * result["seconds"] / samples)
        return make_plan(cfg, result["processes"], args.strategy, args.precision, seq_len=seq)
    except Exception as exc:  # noqa: BLE001 - the measurement stands without the estimate
        return {"error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    args = resolve_defaults(build_parser().parse_args(argv))
    if args.dry_run:
        print(json.dumps(dry_run(args), indent=2))
        return 0
    if args.worker is not None:
        run_worker(args)
        return 0
    started = time.time()
    if not args.single_run:
        report = cpu_report(args)
    else:
        args.worker = Path(tempfile.mkstemp(suffix=".json")[1])
        args.checkpointing = True
        result = run_worker(args)
        if int(os.environ.get("RANK", "0")) != 0:
            return 0
        report = {"run": result}
        if args.geometry == "rgpt7b":
            report["planner"] = planner_estimate(args, result)
    report.update({
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None
                                                       else sys.argv[1:])]),
        "geometry": args.geometry, "stage": args.stage, "device": args.device,
        "images_per_step": args.images_per_step, "grad_accum": args.grad_accum,
        "threads_per_process": args.threads, "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "python": platform.python_version(),
        "wall_s": time.time() - started,
    })
    if not args.single_run:
        report["note"] = "CPU shared with other jobs, run under nice: read the ratios"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("scaling", "checkpointing")},
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
