"""Where a run's conversations come from: synthetic scenes rendered on the fly (one setting or
a weighted mixture, with exact, box or coarse masks: training/scene_mix.py), or JSONL
records; deterministic per (seed, step, micro-step).

A micro-batch is one sequence of samples whatever the number of ranks: rank r of N takes the
slice ``part`` of it. The random stream is one per micro-batch, so a slice that starts later
still draws, and throws away, what the samples before it drew (scenes are rendered for that;
JSONL records before the slice are only counted, never read).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from rgpt_model.data.synthetic import generate_scene
from rgpt_model.training.config import StageSpec, TrainConfig
from rgpt_model.training.samples import Conversation, Turn, scene_conversation
from rgpt_model.training.scene_mix import (
    mix_rng,
    pick_scene_config,
    scene_mixture,
    with_mask_variant,
)


class ConversationSource:
    """Deterministic conversations per (step, micro-step): synthetic scenes or JSONL records."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        d = cfg.data
        self.scene_configs, self.scene_probs = scene_mixture(d)  # one unless data.scenes
        self.records: list[dict] = []
        self.roots: list[Path] = []
        if d.source == "jsonl":
            from rgpt_model.data.jsonl_format import read_jsonl

            for path in d.jsonl:
                for rec in read_jsonl(path):
                    self.records.append(rec)
                    self.roots.append(Path(path).parent)
            if not self.records:
                raise ValueError(f"no records in {d.jsonl}")
        elif d.source == "annotations":  # the datasets' own files, as records of that format
            from rgpt_model.training.annotation_source import annotation_records

            self.records = [r for recs in annotation_records(d).values() for r in recs]
            self.roots = [None] * len(self.records)

    def batch(self, step: int, micro: int, stage: StageSpec | None = None,
              part: slice | None = None) -> list[Conversation]:
        """Conversations of (step, micro), or of its samples ``part`` (a slice with start and
        stop); ``stage`` may override the data settings."""
        d = self.cfg.data
        stage = stage or StageSpec()
        n = stage.images_per_step or self.cfg.images_per_step
        start, stop = (0, n) if part is None else (part.start, part.stop)
        rng = np.random.default_rng([self.cfg.seed, step, micro])
        if d.source == "synthetic":
            first = (step * self.cfg.grad_accum + micro) * 64
            weights = stage.task_weights or d.task_weights
            turns = stage.max_turns or d.max_turns
            negatives = (d.negative_rec_fraction if stage.negative_rec_fraction is None
                         else stage.negative_rec_fraction)
            variants = stage.mask_variants or d.mask_variants
            out = []
            for j in range(stop):
                pick = mix_rng(self.cfg.seed, step, micro, j)  # setting and mask variant
                scene_cfg = pick_scene_config(self.scene_configs, self.scene_probs, pick)
                if stage.max_objects is not None:
                    scene_cfg = dataclasses.replace(scene_cfg, max_objects=stage.max_objects)
                scene = generate_scene(d.seed, first + j, "train", scene_cfg)
                conv = scene_conversation(scene, rng, weights, turns, d.prompt_variants,
                                          negatives, stage.rec_kind_weights,
                                          stage.near_miss_rec_fraction,
                                          stage.negative_kind_weights)
                if variants:
                    conv = with_mask_variant(conv, pick, variants)
                if j >= start:
                    out.append(conv)
            return out
        from rgpt_model.data.jsonl_format import load_record

        out = []
        picks = rng.choice(len(self.records), size=n, replace=len(self.records) < n)
        for k in picks[start:stop]:
            rec, root = self.records[int(k)], self.roots[int(k)]
            image, masks = load_record(rec, root)
            conv = rec["conversations"]
            regions = list(range(len(rec["region_ids"])))
            turns = [Turn(conv[i]["value"], conv[i + 1]["value"], regions, rec["task"])
                     for i in range(0, len(conv), 2)]
            out.append(Conversation(image, masks, turns))
        return out
