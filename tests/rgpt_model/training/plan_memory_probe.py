"""Measures the peak memory of real training steps, in a fresh process: the planner's check.

``python plan_memory_probe.py CONFIG.json`` builds the run's model and trainer, runs
``steps`` optimizer steps through :meth:`Trainer.train`, and prints JSON with the peak
resident set size over the process's RSS before the model existed (torch's CPU allocator
keeps no statistics, and ``tracemalloc`` does not see it). ``MALLOC_MMAP_THRESHOLD_`` must be
set low by the caller: every tensor then lives in its own mapping that ``free`` returns to the
system, so the RSS follows the live tensors instead of glibc's heap high-water mark.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil
import torch


def _peak_rss() -> int:
    """This process's own RSS high-water mark (VmHWM), in bytes.

    Not ``getrusage().ru_maxrss``: after a fork or vfork and exec, Linux carries the parent's
    high-water mark into the child's, so under a large pytest process it reports the parent's
    peak (every case then measured the same 2.3 GB in CI).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status: the probe needs Linux")


def main(config_json: str) -> None:
    spec = json.loads(Path(config_json).read_text())
    torch.set_num_threads(1)
    from rgpt_model.tokenization import build_word_tokenizer
    from rgpt_model.training.builder import scratch_config, synthetic_texts
    from rgpt_model.training.config import config_from_dict
    from rgpt_model.training.trainer import Trainer

    cfg = config_from_dict(spec["config"])
    tokenizer = build_word_tokenizer(synthetic_texts(cfg.data.seed),
                                     num_region_tokens=cfg.model.num_region_tokens)
    rgpt_config = scratch_config(cfg, tokenizer)
    from rgpt_model.build import build_from_config

    shapes = []
    before = psutil.Process().memory_info().rss
    model, processor = build_from_config(rgpt_config, tokenizer, seed=0)
    trainer = Trainer(cfg, model, processor, progress=False)
    for step in range(cfg.total_steps):
        batch, _ = trainer.make_batch(step, 0)
        shapes.append([int(batch["input_ids"].shape[0]), int(batch["input_ids"].shape[1]),
                       int(batch["masks"].shape[0])])
    del batch
    trainer.train()
    peak = _peak_rss()
    print(json.dumps({"before": before, "peak": peak, "measured": peak - before,
                      "shapes": shapes, "vocab": len(tokenizer)}))


if __name__ == "__main__":
    main(sys.argv[1])
