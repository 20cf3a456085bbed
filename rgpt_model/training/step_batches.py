"""The tokenized, collated micro-batches of each training step, and the worker processes that
prepare them ahead of the step that needs them.

A step's data depends only on (seed, step): the conversations (``ConversationSource``), the
stage's augmentations (one random stream per micro-batch) and the tokenization. Workers
therefore change nothing but the speed.

Ranks: a micro-batch has ``images_per_step`` samples in all; rank r of N tokenizes the r-th
N-th of them, so sample k of (step, micro) is the same image and conversation for any N and
the global batch is ``images_per_step x grad_accum`` (per-rank micro x accum x N).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from rgpt_model.processor import RGPTProcessor
from rgpt_model.training.augment import augment
from rgpt_model.training.config import StageSpec, TrainConfig
from rgpt_model.training.conversation_source import ConversationSource
from rgpt_model.training.samples import collate, encode_conversation

Batch = tuple[dict[str, torch.Tensor], int]  # collated tensors, number of answer turns


class StepBatches:
    """Micro-batches of (step, micro) for the run ``cfg`` and its processor."""

    def __init__(self, cfg: TrainConfig, processor: RGPTProcessor,
                 region_token_ids: list[int], rank: int = 0, world_size: int = 1) -> None:
        self.cfg = cfg
        self.processor = processor
        self.region_ids = set(region_token_ids)
        self.source = ConversationSource(cfg)
        self.rank, self.world_size = rank, world_size
        for stage in cfg.stages:
            self.part(stage)  # an uneven split fails now, not when its stage starts

    def part(self, stage: StageSpec) -> slice:
        """This rank's samples of each micro-batch of ``stage``."""
        n = stage.images_per_step or self.cfg.images_per_step
        if n % self.world_size:
            raise ValueError(f"stage {stage.name}: {n} images per micro-batch do not split "
                             f"evenly over {self.world_size} ranks; make images_per_step a "
                             "multiple of the number of processes")
        k = n // self.world_size
        return slice(self.rank * k, (self.rank + 1) * k)

    def make_batch(self, step: int, micro: int) -> Batch:
        """This rank's tokenized, collated part of (step, micro) and its number of answer
        turns; with ``region_attributes`` when every conversation carries them (synthetic
        scenes) and ``object_masks`` (the objects' exact masks) when some masks are box or
        coarse variants."""
        _, stage, _ = self.cfg.stage_at(step)
        p = self.processor
        samples, pix, masks, attrs, objects = [], [], [], [], []
        n_turns = 0
        augment_rng = np.random.default_rng([self.cfg.seed, step, micro, 1])
        part = self.part(stage)
        # the augmentations' stream also runs through the samples before this rank's part
        first = 0 if stage.augmentations else part.start
        convs = self.source.batch(step, micro, stage, slice(first, part.stop))
        for index, conv in enumerate(convs, start=first):
            if not conv.turns:
                continue
            conv = augment(conv, augment_rng, stage)
            if index < part.start:
                continue
            pv, tf = p.preprocess_image(conv.image)
            samples.append(encode_conversation(
                conv, p.tokenizer, p.image_token_id, p.num_global_tokens, self.region_ids,
                self.cfg.data.with_system_prompt))
            pix.append(pv[0])
            masks.append(p.preprocess_masks(conv.masks, tf))
            objects.append(masks[-1] if conv.object_masks is None
                           else p.preprocess_masks(conv.object_masks, tf))
            n_turns += len(conv.turns)
            if conv.attributes is not None:
                attrs.append(torch.from_numpy(conv.attributes))
        batch = collate(samples, pix, masks, p.tokenizer.pad_token_id)
        if attrs and len(attrs) == len(samples):
            batch["region_attributes"] = torch.cat(attrs)
        if any(o is not m for o, m in zip(objects, masks, strict=True)):  # mask variants
            batch["object_masks"] = torch.cat(objects)
        return batch, n_turns

    def step(self, step: int) -> list[Batch]:
        """The ``grad_accum`` micro-batches of ``step``."""
        return [self.make_batch(step, micro) for micro in range(self.cfg.grad_accum)]

    def steps(self, first: int, total: int, device: torch.device) -> Iterator[list[Batch]]:
        """Micro-batches of steps ``first..total-1`` on ``device``, made by ``data_workers``
        processes: scene rendering and tokenization cost about as much as a small model's
        step on the CPU, so a worker prepares the next steps while the trainer trains."""
        def to_device(batches: list[Batch]) -> list[Batch]:
            return [({k: v.to(device) for k, v in b.items()}, n) for b, n in batches]

        if self.cfg.data_workers <= 0:
            for step in range(first, total):
                yield to_device(self.step(step))
            return
        loader = torch.utils.data.DataLoader(
            _StepData(self), batch_size=None, sampler=range(first, total),
            num_workers=self.cfg.data_workers, prefetch_factor=4, persistent_workers=False,
            worker_init_fn=_one_thread)
        for batches in loader:
            yield to_device(batches)


class _StepData(torch.utils.data.Dataset):
    """Index = training step; item = that step's micro-batches (CPU tensors)."""

    def __init__(self, batches: StepBatches) -> None:
        self.batches = batches

    def __getitem__(self, step: int) -> list[Batch]:
        return self.batches.step(step)


def _one_thread(_worker_id: int) -> None:
    """Data workers render scenes; they must not compete with training for OpenMP threads."""
    torch.set_num_threads(1)
