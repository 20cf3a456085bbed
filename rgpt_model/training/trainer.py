"""Stage 1 / stage 2 trainer: mixed task-guided conversations, answer-only loss, accumulation,
checkpoint save and resume, progress bar, seeded determinism, CPU and CUDA, one process or many
(``strategy``: single, ddp, fsdp under torchrun; docs/TRAINING.md).

Auxiliary losses and data augmentations are looked up by name (``aux_losses``, ``augment``):
the trainer itself knows none of them, and trains and checkpoints their heads.

Determinism: the data of step ``s`` depends only on (seed, s), weights on ``seed``; a resumed
run therefore continues with exactly the batches an uninterrupted run would have seen, and a
run on N ranks sees the same samples as one process (each rank a slice of each micro-batch).

The loss of a micro-batch is the mean over the answer tokens of the whole micro-batch, over
all ranks: each rank divides its summed token losses by the global count / N, and DDP / FSDP
average the gradients over the N ranks. Aux losses are each rank's mean, averaged over ranks.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from rgpt_model.device import resolve_dtype
from rgpt_model.modeling import RGPTForCausalLM
from rgpt_model.processor import RGPTProcessor
from rgpt_model.training import checkpointing as ckpt
from rgpt_model.training.aux_losses import AuxLoss, AuxLossSetup, build_aux_loss
from rgpt_model.training.config import TrainConfig, save_config
from rgpt_model.training.distributed import RunProcesses, init_processes
from rgpt_model.training.export import lora_config, save_model_directory
from rgpt_model.training.objective import TrainingObjective, answer_tokens
from rgpt_model.training.parallel import (
    gradient_sync,
    refresh_fsdp_after_freezing,
    shard_with_fsdp,
    wrap_with_ddp,
)
from rgpt_model.training.plugins import load_plugins
from rgpt_model.training.precision import autocast, enable_gradient_checkpointing
from rgpt_model.training.step_batches import Batch, StepBatches

logger = logging.getLogger(__name__)
CHECKPOINT_DIR = ckpt.CHECKPOINT_DIR
FINAL_DIR = "final"


class Trainer:
    """Runs the stages of ``cfg`` on ``model``; saves to ``cfg.output_dir``.

    ``procs``: this process's place in the run (default: from ``cfg.strategy`` and torchrun's
    environment). Call :meth:`close` at the end of a ddp/fsdp run.
    """

    def __init__(self, cfg: TrainConfig, model: RGPTForCausalLM | None = None,
                 processor: RGPTProcessor | None = None, progress: bool = True,
                 procs: RunProcesses | None = None) -> None:
        self.procs = procs or init_processes(cfg.strategy, cfg.device,
                                             cfg.collective_timeout_minutes)
        torch.manual_seed(cfg.seed)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if model is None or processor is None:
            from rgpt_model.training.builder import build_model

            model, processor = build_model(cfg)
        self.cfg = cfg
        self.device = self.procs.device
        self.model = model.to(self.device)
        self.processor = processor
        self.batches = self._step_batches()
        self.out = Path(cfg.output_dir)
        self.progress = progress and self.procs.is_main
        self.step = 0
        self.stage_index = -1
        self.optimizer: torch.optim.Optimizer | None = None
        self.lora_active = False
        self.history: list[dict] = []
        self._lm_attention = self.model.language_model.config._attn_implementation
        self._base_scales = {"region_identity_scale": model.config.region_identity_scale,
                             "mask_position_scale": model.config.mask_position_scale}
        self.objective = TrainingObjective(self.model, self._build_aux_losses())
        self.wrapped: torch.nn.Module = self.objective  # what the step calls (DDP re-wraps)
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(self.model)
        if cfg.strategy == "fsdp":
            if any(s.lm_mode == "lora" and "lm" in s.train for s in cfg.stages):
                self._add_lora()  # LoRA layers must exist before the model is sharded
            shard_with_fsdp(self.objective, list(self.model._no_split_modules), cfg.precision)

    @property
    def aux_losses(self) -> torch.nn.ModuleDict:
        """The aux losses by name (their heads train and are checkpointed with the model)."""
        return self.objective.aux_losses

    def _step_batches(self) -> StepBatches:
        return StepBatches(self.cfg, self.processor, self.model.config.region_token_ids,
                           self.procs.rank, self.procs.world_size)

    def close(self) -> None:
        """Leave the process group this trainer joined (no-op for a single process)."""
        self.procs.close()

    def _build_aux_losses(self) -> dict[str, AuxLoss]:
        """Every aux loss some stage uses, in the order they first appear (training only)."""
        cfg = self.cfg
        load_plugins(cfg.plugins)  # done by config_from_dict, not for a config built in code
        names = dict.fromkeys(n for s in cfg.stages for n in cfg.stage_aux_losses(s))
        losses: dict[str, AuxLoss] = {}
        for n in names:  # a loss may share the heads of one built before it (``requires``)
            losses[n] = build_aux_loss(n, AuxLossSetup(self.model, cfg, losses)).to(self.device)
        for s in cfg.stages:
            reading_lm = [n for n in cfg.stage_aux_losses(s) if losses[n].needs_lm]
            if reading_lm and not s.lm_loss:
                raise ValueError(f"stage {s.name} has no LM loss (lm_loss: false), but its aux "
                                 f"losses {reading_lm} read the LM's outputs")
        return losses

    # ----------------------------------------------------------------------- stages
    def _scale_at(self, index: int, name: str) -> float:
        """Model scale ``name``: the latest stage override at or before stage ``index``,
        else the built model's."""
        scale = self._base_scales[name]
        for stage in self.cfg.stages[: index + 1]:
            if getattr(stage, name) is not None:
                scale = getattr(stage, name)
        return float(scale)

    def _add_lora(self) -> None:
        from peft import get_peft_model

        self.model.language_model = get_peft_model(self.model.language_model,
                                                   lora_config(self.cfg.lora))
        self.lora_active = True

    def _enter_stage(self, index: int) -> None:
        stage = self.cfg.stages[index]
        m = self.model
        if stage.lm_mode == "lora" and "lm" in stage.train and not self.lora_active:
            self._add_lora()
        aux_names = self.cfg.stage_aux_losses(stage)
        # only eager attention returns the attention weights a loss may ask for
        eager = any(self.aux_losses[n].needs_attentions for n in aux_names)
        m.language_model.set_attn_implementation("eager" if eager else self._lm_attention)
        m.config.region_identity_scale = self._scale_at(index, "region_identity_scale")
        if m.mask_position is not None:
            m.config.mask_position_scale = self._scale_at(index, "mask_position_scale")
            m.mask_position.scale = m.config.mask_position_scale
        m.requires_grad_(False)
        region_side = [x for x in (m.refiner, m.mask_encoder, m.pixel_branch) if x is not None]
        parts = {"vision": [m.vision_tower], "refiner": region_side, "connector": [m.connector],
                 "position": [m.mask_position] if m.mask_position is not None else []}
        if "position" in stage.train and m.mask_position is None:
            raise ValueError(f"stage {stage.name} trains 'position', but the model has no mask "
                             "position encoder (set model.mask_position: true)")
        for name in stage.train:
            if name == "lm":
                continue
            for mod in parts[name]:
                mod.requires_grad_(True)
        if "lm" in stage.train and stage.lm_mode != "frozen":
            if self.lora_active:
                for n, p in m.language_model.named_parameters():
                    p.requires_grad_("lora_" in n)
            else:
                m.language_model.requires_grad_(True)
        params = [p for p in m.parameters() if p.requires_grad]
        for name, aux in self.aux_losses.items():
            aux.requires_grad_(name in aux_names)  # DDP / FSDP reduce only what trains
        for name in aux_names:
            params += list(self.aux_losses[name].parameters())
        if self.cfg.strategy == "fsdp":
            refresh_fsdp_after_freezing(self.objective)
        elif self.cfg.strategy == "ddp":
            self.wrapped = self.objective  # drop the old replica's hooks first
            self.wrapped = wrap_with_ddp(self.objective, self.procs)
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=stage.lr, betas=(0.9, 0.98))
        self.stage_index = index
        if self.procs.is_main:
            logger.info("stage %s: training %s (lm %s), %d tensors, %.2f M parameters%s",
                        stage.name, stage.train, stage.lm_mode, len(params),
                        sum(p.numel() for p in params) / 1e6,
                        " (this rank's shards)" if self.cfg.strategy == "fsdp" else "")

    def lr_at(self, step: int) -> float:
        """Linear warm-up then cosine decay to ``min_lr_ratio`` over each stage's
        ``schedule_steps`` (default: its steps)."""
        _, stage, start = self.cfg.stage_at(step)
        k = step - start
        if k < stage.warmup_steps:
            return stage.lr * (k + 1) / stage.warmup_steps
        span = max((stage.schedule_steps or stage.steps) - stage.warmup_steps, 1)
        t = min((k - stage.warmup_steps) / span, 1.0)
        lo = self.cfg.min_lr_ratio
        return stage.lr * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t)))

    # ------------------------------------------------------------------------- data
    def make_batch(self, step: int, micro: int) -> Batch:
        """This rank's tokenized, collated part of (step, micro) and its answer turns."""
        return self.batches.make_batch(step, micro)

    # ------------------------------------------------------------------ checkpoints
    def _trainer_state(self) -> dict:
        return {"step": self.step, "stage_index": self.stage_index,
                "lora_active": self.lora_active, "history": self.history,
                "strategy": self.cfg.strategy, "world_size": self.procs.world_size}

    def save_checkpoint(self) -> Path:
        """Model, optimizer and position, enough to resume exactly (sharded for ddp/fsdp)."""
        path = self.out / CHECKPOINT_DIR
        if self.procs.distributed:
            ckpt.save_sharded(path, self.objective, self.optimizer, self._trainer_state(),
                              self.processor, self.procs)
            return path
        ckpt.save_single(path, {
            **self._trainer_state(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "torch_rng": torch.get_rng_state(),
            "aux_losses": {n: aux.state_dict() for n, aux in self.aux_losses.items()},
        }, self.processor)
        return path

    def load_checkpoint(self) -> bool:
        """Resume from ``output_dir/checkpoint-last`` when present; returns whether it did.
        A sharded checkpoint loads on any number of ranks (and in one process)."""
        path = self.out / CHECKPOINT_DIR
        sharded = ckpt.has_sharded(path)
        if not sharded and not (path / ckpt.SINGLE_STATE).is_file():
            return False
        state = (ckpt.read_trainer_state(path) if sharded
                 else ckpt.load_single(path, self.device))
        self.processor = RGPTProcessor.from_pretrained(path, self.model.config)
        self.batches = self._step_batches()
        if state.get("lora_active") and not self.lora_active:
            self._add_lora()  # a run resumed after its LoRA stage began (or under FSDP)
        if state["stage_index"] >= 0:
            self._enter_stage(state["stage_index"])
        if sharded:
            ckpt.load_sharded(path, self.objective, self.optimizer)
        elif self.cfg.strategy == "fsdp":
            raise ValueError(f"{path} was written by a single-process run (state.pt); resume "
                             "it with strategy single or ddp")
        else:
            ckpt.load_single_state(state, self.model, self.aux_losses, self.optimizer)
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        if self.procs.is_main:
            logger.info("resumed from %s at step %d", path, self.step)
        return True

    def export(self, path: str | Path | None = None) -> Path:
        """Save a loadable RGPT directory (LoRA merged into the LM) in ``save_dtype``; rank 0
        writes it, every rank must call it (FSDP gathers the shards)."""
        path = Path(path) if path is not None else self.out / FINAL_DIR
        state = ckpt.full_model_state(self.objective, self.procs)
        if self.procs.is_main:
            save_model_directory(state, self.model.config, self.processor, self.cfg, path,
                                 lora=self.lora_active, attn_implementation=self._lm_attention,
                                 dtype=resolve_dtype(self.cfg.save_dtype))
        self.procs.barrier()
        self.model.eval()
        return path

    # ------------------------------------------------------------------------ train
    def _part_names(self) -> list[str]:
        """Every loss part a step of the current stage can log, in the order it adds them."""
        stage = self.cfg.stages[self.stage_index]
        names = list(self.cfg.stage_aux_losses(stage))
        later = [n for n in names if self.aux_losses[n].needs_lm]
        return [n for n in names if n not in later] + (["lm", *later] if stage.lm_loss else [])

    def _train_step(self, batches, over_time: bool) -> tuple[dict[str, float], int, bool]:
        """One optimizer step on this rank's micro-batches; returns the step's loss parts and
        answer turns over all ranks, and whether any rank ran over ``max_minutes``."""
        cfg, procs = self.cfg, self.procs
        stage = cfg.stages[self.stage_index]
        micro: list[Batch] = []
        error = None
        try:
            micro = next(batches)
        except Exception as e:  # noqa: BLE001 - every rank must learn of it, then it is raised
            error = e
        where = f"preparing the data of step {self.step + 1}"
        counts = procs.sum_or_fail([answer_tokens(b) for b, _ in micro] if error is None
                                   else [0] * cfg.grad_accum, error, where)
        weights = cfg.stage_aux_losses(stage)
        shares = procs.world_size * cfg.grad_accum  # this rank's part is 1/shares of it
        part_sums: dict[str, float] = {}
        turns = 0
        for m, (batch, n_turns) in enumerate(micro):
            # the global token count / N: the ranks' gradient average is then the global mean
            items = counts[m] / procs.world_size if procs.distributed else None
            with gradient_sync(self.wrapped, sync=m == len(micro) - 1):
                try:
                    with autocast(self.device, cfg.precision):
                        loss, parts = self.wrapped(batch, weights, stage.lm_loss, items)
                except Exception as e:
                    if cfg.strategy != "ddp":  # FSDP: the rank is inside a collective
                        raise
                    error = e
                if cfg.strategy == "ddp":  # no collective yet: a failed forward is agreed on
                    procs.sum_or_fail([], error, f"the forward pass of step {self.step + 1}")
                (loss / cfg.grad_accum).backward()
            for k, v in parts.items():
                part_sums[k] = part_sums.get(k, 0.0) + float(v.detach()) / shares
            turns += n_turns
        params = [p for p in self.model.parameters() if p.requires_grad]
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not procs.distributed:
            return part_sums, turns, over_time
        names = self._part_names()
        summed = procs.sum_or_fail([part_sums.get(n, 0.0) for n in names]
                                   + [float(n in part_sums) for n in names]
                                   + [turns, float(over_time)])
        k = len(names)
        parts = {n: summed[i] for i, n in enumerate(names) if summed[k + i] > 0}
        return parts, int(summed[2 * k]), summed[2 * k + 1] > 0

    def train(self, resume: bool = False, stop_at: int | None = None,
              checkpoint_at_end: bool = True) -> dict:
        """Run to ``total_steps`` (resuming when asked); returns a summary.

        ``stop_at`` ends the run early after that many steps (as an interruption would), with
        a checkpoint to resume from; the schedule still follows ``total_steps``.
        ``checkpoint_at_end=False`` skips the final checkpoint (benchmarks of 7B models).
        """
        cfg = self.cfg
        main = self.procs.is_main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / "train_config.yaml")
        if resume:
            self.load_checkpoint()
        total = cfg.total_steps
        t0 = time.time()
        turns_done = 0
        log_file = (self.out / "train_log.jsonl").open("a") if main else None
        bar = tqdm(total=total, initial=self.step, desc="train", disable=not self.progress,
                   unit="step", dynamic_ncols=True)
        self.model.train()
        stopped_early = False
        batches = self.batches.steps(self.step, total, self.device)
        try:
            while self.step < total:
                idx, _, _ = self.cfg.stage_at(self.step)
                if idx != self.stage_index:
                    self._enter_stage(idx)
                lr = self.lr_at(self.step)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                over_time = (cfg.max_minutes is not None
                             and time.time() - t0 > cfg.max_minutes * 60)
                part_sums, turns, over_time = self._train_step(batches, over_time)
                turns_done += turns
                loss_sum = sum(part_sums.values())  # the parts were read once already
                self.step += 1
                elapsed = time.time() - t0
                rate = turns_done / max(elapsed, 1e-9)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{lr:.2e}", ans_s=f"{rate:.1f}")
                rec = {"step": self.step, "loss": loss_sum, "lr": lr, "elapsed_s": elapsed,
                       "parts": part_sums}
                self.history.append(rec)
                if main and (self.step % cfg.log_every == 0 or self.step == total):
                    log_file.write(json.dumps(rec) + "\n")
                    log_file.flush()
                    logger.info("step %d loss %.4f (%s) lr %.2e %.1f answers/s", self.step,
                                loss_sum, ", ".join(f"{k} {v:.4f}" for k, v in part_sums.items()),
                                lr, rate)
                if cfg.save_every and self.step % cfg.save_every == 0 and self.step < total:
                    self.save_checkpoint()
                if stop_at is not None and self.step >= stop_at:
                    stopped_early = True
                    break
                if over_time:
                    if main:
                        logger.warning("max_minutes=%s reached at step %d; stopping",
                                       cfg.max_minutes, self.step)
                    stopped_early = True
                    break
        finally:
            bar.close()
            if log_file is not None:
                log_file.close()
        if checkpoint_at_end:
            self.save_checkpoint()
        self.model.eval()
        return {"steps": self.step, "seconds": time.time() - t0,
                "final_loss": self.history[-1]["loss"] if self.history else None,
                "stopped_early": stopped_early}
