"""Stage 1 / stage 2 trainer: mixed task-guided conversations, answer-only loss, accumulation,
checkpoint save and resume, progress bar, seeded determinism, CPU and CUDA.

Auxiliary losses and data augmentations are looked up by name (``aux_losses``, ``augment``):
the trainer itself knows none of them, and trains and checkpoints their heads.

Determinism: the data of step ``s`` depends only on (seed, s), weights on ``seed``; a resumed
run therefore continues with exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from rgpt_model.device import resolve_device, resolve_dtype
from rgpt_model.modeling import RGPTForCausalLM
from rgpt_model.processor import RGPTProcessor
from rgpt_model.training.aux_losses import AuxLoss, AuxLossInputs, AuxLossSetup, build_aux_loss
from rgpt_model.training.config import StageSpec, TrainConfig, save_config
from rgpt_model.training.legacy_config import OLD_CHECKPOINT_HEADS
from rgpt_model.training.plugins import load_plugins
from rgpt_model.training.step_batches import Batch, StepBatches

logger = logging.getLogger(__name__)
CHECKPOINT_DIR = "checkpoint-last"
FINAL_DIR = "final"


class Trainer:
    """Runs the stages of ``cfg`` on ``model``; saves to ``cfg.output_dir``."""

    def __init__(self, cfg: TrainConfig, model: RGPTForCausalLM | None = None,
                 processor: RGPTProcessor | None = None, progress: bool = True) -> None:
        torch.manual_seed(cfg.seed)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if model is None or processor is None:
            from rgpt_model.training.builder import build_model

            model, processor = build_model(cfg)
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.model = model.to(self.device)
        self.processor = processor
        self.batches = StepBatches(cfg, processor, model.config.region_token_ids)
        self.out = Path(cfg.output_dir)
        self.progress = progress
        self.step = 0
        self.stage_index = -1
        self.optimizer: torch.optim.Optimizer | None = None
        self.lora_active = False
        self.history: list[dict] = []
        self._lm_attention = self.model.language_model.config._attn_implementation
        self._base_scales = {"region_identity_scale": model.config.region_identity_scale,
                             "mask_position_scale": model.config.mask_position_scale}
        self.aux_losses = self._build_aux_losses()

    def _build_aux_losses(self) -> dict[str, AuxLoss]:
        """Every aux loss some stage uses, in the order they first appear (training only)."""
        cfg = self.cfg
        load_plugins(cfg.plugins)  # done by config_from_dict, not for a config built in code
        names = dict.fromkeys(n for s in cfg.stages for n in cfg.stage_aux_losses(s))
        setup = AuxLossSetup(self.model, cfg)
        losses = {n: build_aux_loss(n, setup).to(self.device) for n in names}
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

    def _enter_stage(self, index: int) -> None:
        stage = self.cfg.stages[index]
        m = self.model
        if stage.lm_mode == "lora" and "lm" in stage.train and not self.lora_active:
            from peft import LoraConfig, get_peft_model

            lc = self.cfg.lora
            m.language_model = get_peft_model(m.language_model, LoraConfig(
                r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                target_modules=list(lc.target_modules), bias="none"))
            self.lora_active = True
        aux_names = self.cfg.stage_aux_losses(stage)
        # only eager attention returns the attention weights a loss may ask for
        eager = any(self.aux_losses[n].needs_attentions for n in aux_names)
        m.language_model.set_attn_implementation("eager" if eager else self._lm_attention)
        m.config.region_identity_scale = self._scale_at(index, "region_identity_scale")
        if m.mask_position is not None:
            m.config.mask_position_scale = self._scale_at(index, "mask_position_scale")
            m.mask_position.scale = m.config.mask_position_scale
        m.requires_grad_(False)
        region_side = [x for x in (m.refiner, m.mask_encoder) if x is not None]
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
        for name in aux_names:
            params += list(self.aux_losses[name].parameters())
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=stage.lr, betas=(0.9, 0.98))
        self.stage_index = index
        logger.info("stage %s: training %s (lm %s), %d tensors, %.2f M parameters", stage.name,
                    stage.train, stage.lm_mode, len(params),
                    sum(p.numel() for p in params) / 1e6)

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
        """Tokenized, collated batch of (step, micro) and its number of answer turns."""
        return self.batches.make_batch(step, micro)

    def loss(self, batch: dict[str, torch.Tensor], stage: StageSpec
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Answer-token LM loss plus the stage's weighted aux losses (one vision pass), and
        each weighted part for the log: an aux loss that stops improving is invisible in the
        total."""
        m = self.model
        g, r = m.region_encoder(batch["pixel_values"], batch["masks"],
                                batch["region_image_index"])
        active = [(n, w, self.aux_losses[n]) for n, w in self.cfg.stage_aux_losses(stage).items()
                  if self.aux_losses[n].applies(batch)]
        inputs = AuxLossInputs(batch, r)
        parts = {n: w * aux(inputs) for n, w, aux in active if not aux.needs_lm}
        if stage.lm_loss:
            after = [(n, w, aux) for n, w, aux in active if aux.needs_lm]
            embeds = m.merge_embeddings(batch["input_ids"], m.project(g), m.project(r),
                                        batch["region_feature_index"],
                                        batch["sample_image_index"])
            out = m(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                    labels=batch["labels"],
                    output_attentions=any(aux.needs_attentions for _, _, aux in after),
                    output_hidden_states=any(aux.needs_hidden_states for _, _, aux in after))
            parts["lm"] = out.loss
            inputs = AuxLossInputs(batch, r, out)
            parts.update((n, w * aux(inputs)) for n, w, aux in after)
        total = sum(parts.values(), g.new_zeros(()))
        return total, {k: float(v.detach()) for k, v in parts.items()}

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Model, optimizer and position, enough to resume exactly."""
        path = self.out / CHECKPOINT_DIR
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / "state.pt.tmp"
        torch.save({
            "step": self.step,
            "stage_index": self.stage_index,
            "lora_active": self.lora_active,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "torch_rng": torch.get_rng_state(),
            "aux_losses": {n: aux.state_dict() for n, aux in self.aux_losses.items()},
            "history": self.history,
        }, tmp)
        tmp.replace(path / "state.pt")
        self.processor.save_pretrained(path)
        return path

    def _load_model_state(self, weights: dict) -> None:
        """Strict, except that a checkpoint from before the mask position encoder existed
        loads into a model that has one (the encoder keeps its zero output)."""
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        missing = [k for k in missing if "mask_position" not in k.split(".")]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint does not fit the model: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}")

    def load_checkpoint(self) -> bool:
        """Resume from ``output_dir/checkpoint-last`` when present; returns whether it did."""
        path = self.out / CHECKPOINT_DIR / "state.pt"
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.processor = RGPTProcessor.from_pretrained(path.parent, self.model.config)
        self.batches = StepBatches(self.cfg, self.processor, self.model.config.region_token_ids)
        if state["stage_index"] >= 0:
            self._enter_stage(state["stage_index"])
        self._load_model_state(state["model"])
        saved = dict(state.get("aux_losses") or {})
        for old, name in OLD_CHECKPOINT_HEADS.items():  # checkpoints from before the registry
            if state.get(old) is not None:
                saved.setdefault(name, state[old])
        for name, aux in self.aux_losses.items():
            if name in saved:
                aux.load_state_dict(saved[name])
        if state["optimizer"] is not None and self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it to the device
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        logger.info("resumed from %s at step %d", path, self.step)
        return True

    def export(self, path: str | Path | None = None) -> Path:
        """Save a loadable RGPT directory (LoRA merged into the LM) in ``save_dtype``."""
        path = Path(path) if path is not None else self.out / FINAL_DIR
        model = self.model
        if self.lora_active:
            model.language_model = model.language_model.merge_and_unload()
            self.lora_active = False
        dtype = resolve_dtype(self.cfg.save_dtype)
        model.eval()
        saved = copy.deepcopy(model).to("cpu", dtype)
        saved.language_model.set_attn_implementation(self._lm_attention)  # eager was for training
        saved.save_pretrained(path)
        self.processor.save_pretrained(path)
        save_config(self.cfg, path / "train_config.yaml")
        return path

    # ------------------------------------------------------------------------ train
    def train(self, resume: bool = False, stop_at: int | None = None) -> dict:
        """Run to ``total_steps`` (resuming when asked); returns a summary.

        ``stop_at`` ends the run early after that many steps (as an interruption would), with
        a checkpoint to resume from; the schedule still follows ``total_steps``.
        """
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.out / "train_config.yaml")
        if resume:
            self.load_checkpoint()
        total = cfg.total_steps
        t0 = time.time()
        turns_done = 0
        log_file = (self.out / "train_log.jsonl").open("a")
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
                part_sums: dict[str, float] = {}
                stage = self.cfg.stages[self.stage_index]
                for batch, n_turns in next(batches):
                    loss, parts = self.loss(batch, stage)
                    (loss / cfg.grad_accum).backward()
                    for k, v in parts.items():
                        part_sums[k] = part_sums.get(k, 0.0) + v / cfg.grad_accum
                    turns_done += n_turns
                loss_sum = sum(part_sums.values())  # the parts were read once already
                params = [p for p in self.model.parameters() if p.requires_grad]
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                elapsed = time.time() - t0
                rate = turns_done / max(elapsed, 1e-9)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{lr:.2e}", ans_s=f"{rate:.1f}")
                rec = {"step": self.step, "loss": loss_sum, "lr": lr, "elapsed_s": elapsed,
                       "parts": part_sums}
                self.history.append(rec)
                if self.step % cfg.log_every == 0 or self.step == total:
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
                if cfg.max_minutes is not None and elapsed > cfg.max_minutes * 60:
                    logger.warning("max_minutes=%s reached at step %d; stopping",
                                   cfg.max_minutes, self.step)
                    stopped_early = True
                    break
        finally:
            bar.close()
            log_file.close()
        self.save_checkpoint()
        self.model.eval()
        return {"steps": self.step, "seconds": time.time() - t0,
                "final_loss": self.history[-1]["loss"] if self.history else None,
                "stopped_early": stopped_early}
