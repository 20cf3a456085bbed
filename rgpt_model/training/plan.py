"""``python -m rgpt_model.training.plan CONFIG --gpus N --gpu-memory 80``: what a run needs.

Per GPU and per stage: weights, gradients, optimizer state, activations with and without
gradient checkpointing, tokens per step, and the time the stage and an epoch take under a
stated throughput assumption. No weights are read: parameter counts come from the model built
on PyTorch's ``meta`` device, its geometry from the sources' config files (or, when they are
not on this machine, CLIP ViT-L/336 + Vicuna-7B, the paper's).

The memory model follows what the trainer does (rgpt_model.training.trainer, precision.py,
parallel.py): float32 master weights and AdamW state for every precision, bf16 autocast
activations for ``bf16``; DDP keeps a second float32 copy of the trainable gradients (its
buckets); FSDP shards weights, gradients and optimizer state over the GPUs and gathers two
layers (the running one and the prefetched one) plus the unsharded root group at a time.
Activations are the tensors autograd keeps for the backward pass, counted per token and layer
from the layer's operations (decoder layer with SDPA attention and a SwiGLU MLP), for an LLM
that trains, is frozen (only input gradients flow, to the connector) or carries LoRA.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rgpt_model.training.config import (
    StageSpec,
    TrainConfig,
    config_tool_parser,
    load_config,
)
from rgpt_model.training.model_geometry import Geometry, model_geometry

__all__ = ["Geometry", "Workload", "bytes_per_gpu", "make_plan", "model_geometry"]

logger = logging.getLogger(__name__)

GIB = 1024**3
COMPUTE_BYTES = {"fp32": 4, "bf16": 2}
# Published training-split sizes, in samples (records) of each reader, for the epoch estimate;
# approximate (COCO 2017, LVIS v1, V3Det, refer's splits, Visual Genome v1.2).
PUBLISHED_SAMPLES = {"coco": 860_000, "lvis": 1_270_000, "v3det": 1_750_000,
                     "refcoco": 120_600, "refcoco+": 120_200, "refcocog": 161_000,
                     "vg": 5_400_000}
TEXT_TOKENS_PER_TURN = 96  # our assumption: a task prompt plus its answer, in LLaMA tokens
SYSTEM_TOKENS = 40  # the Vicuna v1 system prompt


@dataclass(frozen=True)
class Workload:
    """The shapes of one optimizer step on one GPU, and the run's settings."""

    gpus: int
    strategy: str  # single, ddp, fsdp
    precision: str  # fp32, bf16
    micro_batch: int  # samples per GPU per micro-step
    seq_len: int  # tokens per sample
    regions: int  # region masks per sample
    grad_accum: int = 1


def lm_mode(stage: StageSpec) -> str:
    """How the LLM takes part in a stage: full, lora or frozen."""
    return stage.lm_mode if "lm" in stage.train else "frozen"


def trainable_params(g: Geometry, stage: StageSpec) -> int:
    """Parameters the optimizer holds in ``stage``."""
    n = sum(g.parts[p] for p in stage.train if p != "lm")
    return n + {"full": g.parts["lm"], "lora": g.lora_params, "frozen": 0}[lm_mode(stage)]


def decoder_layer_bytes(g: Geometry, mode: str, precision: str, seq_len: int) -> int:
    """Bytes one decoder layer keeps per token for the backward pass (counted from the
    tensors autograd saves in transformers' LLaMA layer with SDPA attention).

    Residual-stream tensors stay float32 under autocast (``r``), matrix-product outputs are in
    the compute dtype (``c``). Trained: both norms' inputs and normalised values (r), the
    norms' outputs, q, k, v and the attention output (c; k and v repeated to every head, as
    transformers does for grouped-query attention under a padding mask), the MLP's gate, up,
    activation and product (c). Frozen: only what input gradients need: the norms' inputs (r),
    q, k, v, the attention output, gate, activation and up (c). LoRA adds the adapters' inputs
    (c). Every layer also keeps its own copy of the additive padding mask (``seq_len`` per
    token, c)."""
    r, c = 4, COMPUTE_BYTES[precision]
    h, i = g.hidden, g.intermediate
    if mode == "full":
        kept = 4 * h * r + (6 * h + 4 * i) * c
    else:
        kept = 2 * h * r + (4 * h + 3 * i) * c + (2 * h * c if mode == "lora" else 0)
    return kept + seq_len * c


def sample_activation_bytes(g: Geometry, stage: StageSpec, w: Workload,
                            checkpointing: bool) -> dict[str, int]:
    """Activation bytes of one sample: LLM layers, the backward pass's transient gradients,
    logits and loss, vision side."""
    mode = lm_mode(stage)
    c = COMPUTE_BYTES[w.precision]
    t = w.seq_len
    per_layer = decoder_layer_bytes(g, mode, w.precision, t) * t
    if checkpointing:  # layer inputs kept, one layer's activations live again in backward
        layers = g.layers * g.hidden * 4 * t + per_layer
    else:
        layers = g.layers * per_layer
    # one layer's gradients in flight during its backward pass (MLP and attention tensors)
    transient = (4 * g.hidden + 3 * g.intermediate) * c * t
    # final norm input (its normalised value and output too for a trained head); logits:
    # their float32 log-softmax and two float32 gradients of that size (12 bytes per logit)
    head = g.hidden * 4 * t * (3 if mode == "full" else 1)
    logits = 12 * g.vocab * t
    vision = 0
    if "vision" in stage.train:  # LayerNorm inputs (r), q/k/v/out/copy, LN outputs, MLP (c)
        h, i = g.vision_hidden, g.vision_intermediate
        per_vlayer = (2 * h * 4 + (7 * h + 2 * i) * c) * g.patches
        vision = (g.vision_layers * g.patches * h * 4 + per_vlayer if checkpointing
                  else g.vision_layers * per_vlayer)
    refiner = 0
    if g.refiner_hidden and ({"refiner", "connector"} & set(stage.train) or mode != "frozen"):
        # the tower's output and the refiner's inner tensors (transposed conv, LayerNorm,
        # GELU); mask pooling keeps only the masks (a batch-level term, bytes_per_gpu)
        refiner = (g.grid ** 2 * g.vision_hidden + 3 * (2 * g.grid) ** 2 * g.refiner_hidden) * 4
    connector = (g.global_tokens + w.regions) * (g.vision_hidden + 2 * g.hidden) * 4
    return {"llm_layers": layers, "backward_transient": transient, "head": head,
            "logits": logits, "vision": vision, "refiner_connector": refiner + connector}


def bytes_per_gpu(g: Geometry, stage: StageSpec, w: Workload, checkpointing: bool
                  ) -> dict[str, int]:
    """Peak bytes on one GPU in ``stage``, by kind."""
    total_params = sum(g.parts.values())
    trainable = trainable_params(g, stage)
    shard = w.gpus if w.strategy == "fsdp" else 1
    c = COMPUTE_BYTES[w.precision]
    out = {"weights": math.ceil(total_params * 4 / shard),
           "gradients": math.ceil(trainable * 4 / shard),
           "optimizer": math.ceil(trainable * 8 / shard)}
    if w.strategy == "ddp":
        out["ddp_buckets"] = trainable * 4
    if w.strategy == "fsdp":  # two gathered layers and the unsharded root group
        out["fsdp_gathered"] = (2 * g.layer_params + g.root_params) * c
    elif w.precision == "bf16":  # autocast's bf16 copies of the trainable weights
        out["autocast_cache"] = trainable * 2
    act = sample_activation_bytes(g, stage, w, checkpointing)
    out["activations"] = w.micro_batch * sum(act.values())
    # mask pooling multiplies a (regions, images x refined cells) block matrix of the masks
    # with the features, and keeps it for the features' gradient
    regions = w.micro_batch * w.regions
    out["activations"] += regions * w.micro_batch * (4 * g.grid) ** 2 * 4 if g.refiner_hidden else 0
    return out


def flops_per_token(g: Geometry, stage: StageSpec, checkpointing: bool) -> float:
    """Training FLOPs per LLM token: 2 per parameter forward, 2 more backward for input
    gradients, 2 more for weight gradients of a trained LLM; recomputation adds a forward."""
    n = g.parts["lm"] - g.vocab * g.hidden  # the input embedding is a lookup
    per = 2 + 2 + (2 if lm_mode(stage) == "full" else 0) + (2 if checkpointing else 0)
    return per * n


@dataclass
class StagePlan:
    """The plan of one stage on one GPU."""

    name: str
    lm: str
    trainable_params: int
    global_batch: int
    micro_batch_per_gpu: int
    grad_accum: int
    tokens_per_step: int
    memory_gib: dict[str, float]
    memory_checkpointed_gib: dict[str, float]
    total_gib: float
    total_checkpointed_gib: float
    seconds_per_step: float
    stage_hours: float
    epoch_steps: int | None
    epoch_hours: float | None


def estimate_seq_len(cfg: TrainConfig, g: Geometry) -> int:
    """Tokens per sample: BOS, system prompt, image tokens, ``max_turns`` prompt+answer turns
    (synthetic data) or one (annotation records), capped at 2048 (LLaVA-1.5's max length)."""
    turns = cfg.data.max_turns if cfg.data.source == "synthetic" else 1
    return min(1 + SYSTEM_TOKENS + g.global_tokens + turns * TEXT_TOKENS_PER_TURN, 2048)


def plan_stage(g: Geometry, cfg: TrainConfig, stage: StageSpec, w: Workload,
               tokens_per_s_per_gpu: float, epoch_samples: int | None) -> StagePlan:
    """Memory with and without checkpointing, and time at the given throughput."""
    plain = bytes_per_gpu(g, stage, w, checkpointing=False)
    ckpt = bytes_per_gpu(g, stage, w, checkpointing=True)
    global_batch = w.micro_batch * w.gpus * w.grad_accum
    tokens = global_batch * w.seq_len
    seconds = tokens / (tokens_per_s_per_gpu * w.gpus)
    epoch_steps = math.ceil(epoch_samples / global_batch) if epoch_samples else None
    return StagePlan(
        name=stage.name, lm=lm_mode(stage), trainable_params=trainable_params(g, stage),
        global_batch=global_batch, micro_batch_per_gpu=w.micro_batch, grad_accum=w.grad_accum,
        tokens_per_step=tokens,
        memory_gib={k: v / GIB for k, v in plain.items()},
        memory_checkpointed_gib={k: v / GIB for k, v in ckpt.items()},
        total_gib=sum(plain.values()) / GIB, total_checkpointed_gib=sum(ckpt.values()) / GIB,
        seconds_per_step=seconds, stage_hours=seconds * stage.steps / 3600,
        epoch_steps=epoch_steps,
        epoch_hours=seconds * epoch_steps / 3600 if epoch_steps else None)


def epoch_samples(cfg: TrainConfig, override: int | None) -> tuple[int | None, str]:
    """Samples in one epoch of the run's data, and where the number comes from."""
    if override:
        return override, "given (--samples)"
    d = cfg.data
    if d.source == "annotations":
        known = [n for n in d.annotations if n in PUBLISHED_SAMPLES]
        if known:
            return (sum(PUBLISHED_SAMPLES[n] for n in known),
                    "published split sizes of " + ", ".join(known) + " (approximate)")
    return None, "unknown (synthetic scenes are endless; pass --samples)"


def build_parser() -> argparse.ArgumentParser:
    p = config_tool_parser(
        "python -m rgpt_model.training.plan",
        "Per-GPU memory (weights, gradients, optimizer state, activations with and without "
        "gradient checkpointing), tokens per step and expected time of every stage of a run "
        "config. Reads no weights.")
    p.add_argument("--gpus", type=int, default=1, help="GPUs (ranks) of the run")
    p.add_argument("--gpu-memory", type=float, default=80.0, help="GiB per GPU")
    p.add_argument("--strategy", choices=("config", "single", "ddp", "fsdp"), default="config",
                   help="config = the config's strategy")
    p.add_argument("--precision", choices=("config", "fp32", "bf16"), default="config",
                   help="config = the config's precision")
    p.add_argument("--seq-len", type=int, default=None,
                   help="tokens per sample; none: estimated from the config's data")
    p.add_argument("--regions", type=int, default=8, help="region masks per sample")
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="peak dense TFLOPS of one GPU in the compute dtype (H100 SXM bf16)")
    p.add_argument("--mfu", type=float, default=0.35,
                   help="assumed model FLOPs utilisation (share of the peak reached)")
    p.add_argument("--samples", type=int, default=None,
                   help="samples in one epoch; none: the published sizes of the config's "
                        "annotation readers")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    return p


def make_plan(cfg: TrainConfig, gpus: int, strategy: str, precision: str,
              seq_len: int | None = None, regions: int = 8, peak_tflops: float = 989.0,
              mfu: float = 0.35, samples: int | None = None) -> dict:
    """The whole plan as a dict (what the command prints)."""
    g = model_geometry(cfg)
    seq = seq_len or estimate_seq_len(cfg, g)
    n_samples, samples_note = epoch_samples(cfg, samples)
    stages = []
    for stage in cfg.stages:
        per_step = stage.images_per_step or cfg.images_per_step
        if per_step % gpus:
            raise ValueError(f"stage {stage.name}: images_per_step {per_step} does not split "
                             f"over {gpus} GPUs")
        w = Workload(gpus, strategy, precision, per_step // gpus, seq, regions, cfg.grad_accum)
        ckpt = cfg.gradient_checkpointing
        tok_s = peak_tflops * 1e12 * mfu / flops_per_token(g, stage, ckpt)
        stages.append(asdict(plan_stage(g, cfg, stage, w, tok_s, n_samples)) |
                      {"tokens_per_s_per_gpu": tok_s})
    return {"geometry": g.note, "parameters": g.parts, "gpus": gpus, "strategy": strategy,
            "precision": precision, "gradient_checkpointing": cfg.gradient_checkpointing,
            "seq_len": seq, "seq_len_note": "given" if seq_len else "estimated",
            "epoch_samples": n_samples, "epoch_samples_note": samples_note,
            "throughput_assumption": f"{mfu:.0%} of {peak_tflops:g} TFLOPS per GPU, "
                                     "4-8 FLOPs per LLM parameter and token (vision tower "
                                     "not counted: ~3 % at 7B)", "stages": stages}


def format_plan(plan: dict, gpu_memory: float) -> str:
    """Human-readable table of :func:`make_plan`'s result."""
    lines = [f"model: {plan['geometry']}",
             "parameters (M): " + ", ".join(f"{k} {v / 1e6:.1f}"
                                            for k, v in plan["parameters"].items()),
             f"{plan['gpus']} GPU(s), {plan['strategy']}, {plan['precision']}, "
             f"{plan['seq_len']} tokens/sample ({plan['seq_len_note']}); throughput: "
             f"{plan['throughput_assumption']}",
             f"epoch: {plan['epoch_samples'] or '?'} samples ({plan['epoch_samples_note']})"]
    for s in plan["stages"]:
        lines.append(f"\nstage {s['name']} (LLM {s['lm']}, {s['trainable_params'] / 1e6:.1f} M "
                     f"trainable): global batch {s['global_batch']} = {s['micro_batch_per_gpu']}"
                     f"/GPU x {s['grad_accum']} accum x {plan['gpus']} GPUs, "
                     f"{s['tokens_per_step']} tokens/step")
        lines.append(f"  {'GiB per GPU':<16}{'no ckpt':>10}{'ckpt':>10}")
        for k in s["memory_gib"]:
            lines.append(f"  {k:<16}{s['memory_gib'][k]:>10.2f}"
                         f"{s['memory_checkpointed_gib'][k]:>10.2f}")
        fits = ["fits" if x <= gpu_memory else "OVER"
                for x in (s["total_gib"], s["total_checkpointed_gib"])]
        lines.append(f"  {'total':<16}{s['total_gib']:>10.2f}{s['total_checkpointed_gib']:>10.2f}"
                     f"   of {gpu_memory:g}: {fits[0]} / {fits[1]}")
        epoch = (f", epoch {s['epoch_steps']} steps = {s['epoch_hours']:.1f} h"
                 if s["epoch_hours"] is not None else "")
        lines.append(f"  time: {s['tokens_per_s_per_gpu']:.0f} tokens/s/GPU, "
                     f"{s['seconds_per_step']:.3g} s/step, stage {s['stage_hours']:.3g} h{epoch}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, args.overrides)
    strategy = cfg.strategy if args.strategy == "config" else args.strategy
    precision = cfg.precision if args.precision == "config" else args.precision
    plan = make_plan(cfg, args.gpus, strategy, precision, args.seq_len, args.regions,
                     args.peak_tflops, args.mfu, args.samples)
    print(json.dumps(plan, indent=2) if args.json else format_plan(plan, args.gpu_memory))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
