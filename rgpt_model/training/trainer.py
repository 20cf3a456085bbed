"""Stage 1 / stage 2 trainer: mixed task-guided conversations, answer-only loss, accumulation,
checkpoint save and resume, progress bar, seeded determinism, CPU and CUDA.

Determinism: the data of step ``s`` depends only on (seed, s), weights on ``seed``; a resumed
run therefore continues with exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.modeling import RGPTForCausalLM
from rgpt_model.processor import RGPTProcessor
from rgpt_model.training.augment import grey_repaint
from rgpt_model.training.config import StageSpec, TrainConfig, save_config
from rgpt_model.training.rec_attention import (
    ExpressionReadout,
    RegionPositionReadout,
    rec_attention_loss,
    rec_pointers,
    rec_readout_loss,
)
from rgpt_model.training.samples import (
    Conversation,
    Turn,
    collate,
    encode_conversation,
    scene_conversation,
)

logger = logging.getLogger(__name__)
CHECKPOINT_DIR = "checkpoint-last"
FINAL_DIR = "final"


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class AuxHeads(torch.nn.Module):
    """Linear probes on pooled region features: shape, colour, size, centroid (x, y).

    Training-only (never exported). They give the from-scratch vision tower a direct signal
    about each region, which the LM loss alone delivers slowly.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        from rgpt_model.data.attributes import COLOURS, SHAPES, SIZES

        self.norm = torch.nn.LayerNorm(dim)
        self.shape = torch.nn.Linear(dim, len(SHAPES))
        self.colour = torch.nn.Linear(dim, len(COLOURS))
        self.size = torch.nn.Linear(dim, len(SIZES))
        self.centroid = torch.nn.Linear(dim, 2)

    def loss(self, feats: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        x = self.norm(feats.float())
        attrs = attrs.to(x.device)
        colour = attrs[:, 1].long()  # -1 = no colour (grey repaint)
        colour_loss = (F.cross_entropy(self.colour(x), colour, ignore_index=-1)
                       if bool((colour >= 0).any()) else x.new_zeros(()))
        return (F.cross_entropy(self.shape(x), attrs[:, 0].long())
                + colour_loss
                + F.cross_entropy(self.size(x), attrs[:, 2].long())
                + 10.0 * F.mse_loss(self.centroid(x), attrs[:, 3:5]))


def shape_only_view(conv: Conversation, rng: np.random.Generator) -> Conversation:
    """``conv`` with its objects repainted grey and colour labels dropped (vision stage)."""
    attrs = None
    if conv.attributes is not None:
        attrs = conv.attributes.copy()
        attrs[:, 1] = -1
    return Conversation(grey_repaint(conv.image, conv.masks, rng), conv.masks, conv.turns,
                        attrs)


COLOUR_FREE_TASKS = frozenset({"classify"})  # answers that never name a colour


def names_no_colour(conv: Conversation) -> bool:
    """Whether a grey repaint keeps ``conv``'s answers true: in LM stages only such
    conversations are repainted, so that labels are learnt from shape, not from the colours
    the training split pairs with each shape."""
    return all(turn.task in COLOUR_FREE_TASKS for turn in conv.turns)


class ConversationSource:
    """Deterministic conversations per (step, micro-step): synthetic scenes or JSONL records."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        d = cfg.data
        self.scene_cfg = SceneConfig(height=d.image_height, width=d.image_width,
                                     min_objects=d.min_objects, max_objects=d.max_objects)
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

    def batch(self, step: int, micro: int, stage: StageSpec | None = None) -> list[Conversation]:
        """Conversations of (step, micro); ``stage`` may override the data settings."""
        d = self.cfg.data
        stage = stage or StageSpec()
        n = stage.images_per_step or self.cfg.images_per_step
        rng = np.random.default_rng([self.cfg.seed, step, micro])
        if d.source == "synthetic":
            first = (step * self.cfg.grad_accum + micro) * 64
            scene_cfg = self.scene_cfg
            if stage.max_objects is not None:
                scene_cfg = dataclasses.replace(scene_cfg, max_objects=stage.max_objects)
            weights = stage.task_weights or d.task_weights
            turns = stage.max_turns or d.max_turns
            negatives = (d.negative_rec_fraction if stage.negative_rec_fraction is None
                         else stage.negative_rec_fraction)
            out = []
            for j in range(n):
                scene = generate_scene(d.seed, first + j, "train", scene_cfg)
                conv = scene_conversation(scene, rng, weights, turns, d.prompt_variants,
                                          negatives, stage.rec_kind_weights,
                                          stage.near_miss_rec_fraction)
                out.append(conv)
            return out
        from rgpt_model.data.jsonl_format import load_record

        out = []
        for k in rng.choice(len(self.records), size=n, replace=len(self.records) < n):
            rec, root = self.records[int(k)], self.roots[int(k)]
            image, masks = load_record(rec, root)
            conv = rec["conversations"]
            regions = list(range(len(rec["region_ids"])))
            turns = [Turn(conv[i]["value"], conv[i + 1]["value"], regions, rec["task"])
                     for i in range(0, len(conv), 2)]
            out.append(Conversation(image, masks, turns))
        return out


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
        self.source = ConversationSource(cfg)
        self.out = Path(cfg.output_dir)
        self.progress = progress
        self.step = 0
        self.stage_index = -1
        self.optimizer: torch.optim.Optimizer | None = None
        self.lora_active = False
        self._region_ids = set(model.config.region_token_ids)
        self._region_id_tensor = torch.as_tensor(sorted(self._region_ids), device=self.device)
        self.history: list[dict] = []
        self._lm_attention = self.model.language_model.config._attn_implementation
        self._base_scales = {"region_identity_scale": model.config.region_identity_scale,
                             "mask_position_scale": model.config.mask_position_scale}
        self.aux_heads: AuxHeads | None = None
        if cfg.aux_loss_weight > 0:
            torch.manual_seed(cfg.seed + 1)
            self.aux_heads = AuxHeads(model.config.vision_config.hidden_size).to(self.device)
        self.expression_readout: ExpressionReadout | None = None
        if any(s.rec_expression_weight > 0 for s in cfg.stages):
            torch.manual_seed(cfg.seed + 2)
            text = model.config.text_config
            self.expression_readout = ExpressionReadout(
                text.hidden_size, text.vocab_size).to(self.device)
        self.position_readout: RegionPositionReadout | None = None
        if any(s.rec_position_weight > 0 for s in cfg.stages):
            torch.manual_seed(cfg.seed + 3)
            self.position_readout = RegionPositionReadout(
                model.config.text_config.hidden_size).to(self.device)

    # ----------------------------------------------------------------------- stages
    def stage_at(self, step: int) -> tuple[int, StageSpec, int]:
        """(stage index, stage, first step of the stage) for global ``step``."""
        start = 0
        for i, s in enumerate(self.cfg.stages):
            if step < start + s.steps:
                return i, s, start
            start += s.steps
        return len(self.cfg.stages) - 1, self.cfg.stages[-1], start - self.cfg.stages[-1].steps

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
        # only eager attention returns the weights REC attention supervision needs
        m.language_model.set_attn_implementation(
            "eager" if stage.rec_attention_weight > 0 else self._lm_attention)
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
        if self.aux_heads is not None:
            params += list(self.aux_heads.parameters())
        if self.expression_readout is not None and stage.rec_expression_weight > 0:
            params += list(self.expression_readout.parameters())
        if self.position_readout is not None and stage.rec_position_weight > 0:
            params += list(self.position_readout.parameters())
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
        _, stage, start = self.stage_at(step)
        k = step - start
        if k < stage.warmup_steps:
            return stage.lr * (k + 1) / stage.warmup_steps
        span = max((stage.schedule_steps or stage.steps) - stage.warmup_steps, 1)
        t = min((k - stage.warmup_steps) / span, 1.0)
        lo = self.cfg.min_lr_ratio
        return stage.lr * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t)))

    # ------------------------------------------------------------------------- data
    def make_batch(self, step: int, micro: int) -> tuple[dict[str, torch.Tensor], int]:
        """Tokenized, collated batch of (step, micro) and its number of answer turns."""
        _, stage, _ = self.stage_at(step)
        convs = self.source.batch(step, micro, stage)
        p = self.processor
        samples, pix, masks, attrs = [], [], [], []
        n_turns = 0
        grey_rng = np.random.default_rng([self.cfg.seed, step, micro, 1])
        for conv in convs:
            if not conv.turns:
                continue
            if (stage.grey_fraction > 0 and grey_rng.random() < stage.grey_fraction
                    and (not stage.lm_loss or names_no_colour(conv))):
                conv = shape_only_view(conv, grey_rng)
            pv, tf = p.preprocess_image(conv.image)
            samples.append(encode_conversation(
                conv, p.tokenizer, p.image_token_id, p.num_global_tokens, self._region_ids,
                self.cfg.data.with_system_prompt))
            pix.append(pv[0])
            masks.append(p.preprocess_masks(conv.masks, tf))
            n_turns += len(conv.turns)
            if conv.attributes is not None:
                attrs.append(torch.from_numpy(conv.attributes))
        batch = collate(samples, pix, masks, p.tokenizer.pad_token_id)
        if self.aux_heads is not None:
            if len(attrs) != len(samples):
                raise ValueError("aux_loss_weight needs region attributes (synthetic data)")
            batch["region_attributes"] = torch.cat(attrs)
        return batch, n_turns

    def loss(self, batch: dict[str, torch.Tensor], stage: StageSpec
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Answer-token LM loss plus the stage's weighted auxiliary region-attribute, REC
        attention and readout losses (one vision pass), and each weighted part for the log:
        a readout that stops improving is invisible in the total."""
        m = self.model
        g, r = m.encode_regions(batch["pixel_values"], batch["masks"],
                                batch["region_image_index"])
        parts: dict[str, torch.Tensor] = {}
        if self.aux_heads is not None:
            parts["aux"] = self.cfg.aux_loss_weight * self.aux_heads.loss(
                r, batch["region_attributes"])
        if stage.lm_loss:
            embeds = m.merge_embeddings(batch["input_ids"], m.project(g), m.project(r),
                                        batch["region_feature_index"],
                                        batch["sample_image_index"])
            positions = batch["rec_positions"]
            supervise = stage.rec_attention_weight > 0 and positions.numel() > 0
            read_words = stage.rec_expression_weight > 0 and positions.numel() > 0
            read_positions = stage.rec_position_weight > 0
            out = m(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                    labels=batch["labels"], output_attentions=supervise,
                    output_hidden_states=read_words or read_positions)
            parts["lm"] = out.loss
            if supervise:
                parts["rec_attention"] = stage.rec_attention_weight * rec_attention_loss(
                    out.attentions, rec_pointers(positions, stage.rec_pointer_layout))
            if stage.rec_readout_weight > 0:
                parts["rec_readout"] = stage.rec_readout_weight * rec_readout_loss(
                    out.logits, positions, batch["input_ids"])
            if read_words:
                parts["expression_readout"] = (
                    stage.rec_expression_weight * self.expression_readout.loss(
                        out.hidden_states, positions, batch["input_ids"]))
            if read_positions:
                region_tokens = torch.isin(batch["input_ids"], self._region_id_tensor)
                parts["position_readout"] = (
                    stage.rec_position_weight * self.position_readout.loss(
                        out.hidden_states, region_tokens, batch["masks"],
                        batch["region_feature_index"]))
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
            "aux_heads": self.aux_heads.state_dict() if self.aux_heads is not None else None,
            "expression_readout": (self.expression_readout.state_dict()
                                   if self.expression_readout is not None else None),
            "position_readout": (self.position_readout.state_dict()
                                 if self.position_readout is not None else None),
            "history": self.history,
        }, tmp)
        tmp.replace(path / "state.pt")
        self.processor.save_pretrained(path)
        return path

    def _load_model_state(self, weights: dict) -> None:
        """Strict, except that a checkpoint from before the mask position encoder existed
        loads into a model that has one (the encoder keeps its zero output)."""
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        missing = [k for k in missing if not k.startswith("mask_position.")]
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
        if state["stage_index"] >= 0:
            self._enter_stage(state["stage_index"])
        self._load_model_state(state["model"])
        if self.aux_heads is not None and state.get("aux_heads") is not None:
            self.aux_heads.load_state_dict(state["aux_heads"])
        if self.expression_readout is not None and state.get("expression_readout") is not None:
            self.expression_readout.load_state_dict(state["expression_readout"])
        if self.position_readout is not None and state.get("position_readout") is not None:
            self.position_readout.load_state_dict(state["position_readout"])
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
        dtype = getattr(torch, self.cfg.save_dtype)
        model.eval()
        import copy

        saved = copy.deepcopy(model).to("cpu", dtype)
        saved.language_model.set_attn_implementation(self._lm_attention)  # eager was for training
        saved.save_pretrained(path)
        self.processor.save_pretrained(path)
        save_config(self.cfg, path / "train_config.yaml")
        return path

    # ------------------------------------------------------------------------ train
    def _micro_batches(self, step: int) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
        for micro in range(self.cfg.grad_accum):
            yield self.make_batch(step, micro)

    def _step_batches(self, first: int, total: int) -> Iterator[list]:
        """Micro-batches of steps ``first..total-1``, made by ``data_workers`` processes.

        Scene rendering and tokenization cost about as much as a small model's step on the
        CPU, so a worker prepares the next steps while this process trains. A step's data
        depends only on (seed, step), so workers change nothing but the speed.
        """
        if self.cfg.data_workers <= 0:
            for step in range(first, total):
                yield [(self._to_device(b), n) for b, n in self._micro_batches(step)]
            return
        loader = torch.utils.data.DataLoader(
            _StepData(self), batch_size=None, sampler=range(first, total),
            num_workers=self.cfg.data_workers, prefetch_factor=4, persistent_workers=False,
            worker_init_fn=_one_thread)
        for micro in loader:
            yield [(self._to_device(b), n) for b, n in micro]

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.items()}

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
        batches = self._step_batches(self.step, total)
        try:
            while self.step < total:
                idx, _, _ = self.stage_at(self.step)
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


class _StepData(torch.utils.data.Dataset):
    """Index = training step; item = that step's micro-batches (CPU tensors)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def __getitem__(self, step: int) -> list[tuple[dict[str, torch.Tensor], int]]:
        return list(self.trainer._micro_batches(step))


def _one_thread(_worker_id: int) -> None:
    """Data workers render scenes; they must not compete with training for OpenMP threads."""
    torch.set_num_threads(1)
