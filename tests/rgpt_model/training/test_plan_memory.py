"""The planner's memory formula against the measured peak memory of real training steps.

Measured: the peak resident set size of a fresh process running the trainer, over its RSS
before the model was built (plan_memory_probe.py; torch's CPU allocator keeps no statistics
and tracemalloc cannot see it, so RSS it is, with glibc told to give every tensor its own
mapping). Runs of a scratch model on the CPU, each dominated by another term of the
formula: a stage that trains the whole LLM (weights, gradients, AdamW state), a stage-1 run
with the LLM frozen and long batches (activations of a frozen LLM), the same with gradient
checkpointing (layer inputs plus one layer recomputed, and the logits), and the same under
bf16 autocast (the trainer's bf16 path on the CPU: bf16 matrix products, float32 residuals).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rgpt_model.training.config import config_from_dict
from rgpt_model.training.plan import Workload, bytes_per_gpu, model_geometry

PROBE = Path(__file__).with_name("plan_memory_probe.py")
TOLERANCE = 0.20  # the bound


def _run(text: tuple[int, int, int, int, int], images: int, turns: int, train: list[str],
         lm_mode: str, lr: float) -> dict:
    """Overrides of a scratch run: LLM (hidden, MLP, layers, heads, kv heads), batch, one stage."""
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads")
    return {"model": {"text": dict(zip(keys, text, strict=True))}, "images_per_step": images,
            "data": {"max_turns": turns},
            "stages": [{"name": lm_mode, "steps": 2, "lr": lr, "warmup_steps": 1,
                        "train": train, "lm_mode": lm_mode}]}


# weights, gradients and AdamW state dominate: the whole LLM trains on short batches
FULL_LM = _run((512, 1376, 6, 8, 8), 2, 1, ["refiner", "connector", "lm"], "full", 1e-4)
# activations dominate: stage 1, the LLM frozen, 24 images of six turns a step
FROZEN_LM = _run((256, 688, 4, 4, 2), 24, 6, ["refiner", "connector"], "frozen", 1e-3)


def _measure(tmp_path: Path, overrides: dict) -> tuple[dict, dict]:
    run = {"output_dir": str(tmp_path / "run"), "num_threads": 1, "save_every": 0,
           "log_every": 1, **overrides}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"config": run}))
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(PROBE), str(spec)], capture_output=True,
                          text=True, env=env, timeout=240, cwd=Path(__file__).parents[3])
    assert done.returncode == 0, done.stderr[-3000:]
    return run, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case,checkpointing,precision", [
    ("full_lm", False, "fp32"), ("frozen_lm", False, "fp32"), ("frozen_lm", True, "fp32"),
    ("frozen_lm", False, "bf16")])
def test_planner_within_20_percent_of_measured_peak(tmp_path, case, checkpointing, precision):
    overrides = dict(FULL_LM if case == "full_lm" else FROZEN_LM)
    overrides["gradient_checkpointing"] = checkpointing
    overrides["precision"] = precision
    run, measured = _measure(tmp_path, overrides)
    cfg = config_from_dict(run)
    geometry = model_geometry(cfg)
    assert geometry.vocab == measured["vocab"]  # the same tokenizer as the probe's
    batch, seq, masks = (max(s[i] for s in measured["shapes"]) for i in range(3))
    work = Workload(gpus=1, strategy="single", precision=precision, micro_batch=batch,
                    seq_len=seq, regions=-(-masks // batch))
    planned = bytes_per_gpu(geometry, cfg.stages[0], work, checkpointing)
    total = sum(planned.values())
    ratio = total / measured["measured"]
    detail = {k: round(v / 2**20, 1) for k, v in planned.items()}
    print(f"{case} {precision} ckpt={checkpointing}: planned {total / 2**20:.0f} MiB, measured "
          f"{measured['measured'] / 2**20:.0f} MiB, ratio {ratio:.2f}")
    assert abs(ratio - 1) <= TOLERANCE, (
        f"{case} ({precision}, checkpointing {checkpointing}): planned "
        f"{total / 2**20:.0f} MiB {detail}, measured {measured['measured'] / 2**20:.0f} MiB "
        f"(ratio {ratio:.2f})")
