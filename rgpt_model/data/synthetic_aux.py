"""Training aids of the synthetic shapes world, plugged into the generic trainer by name.

- aux loss ``region_attributes``: linear heads on the pooled region features predict each
  region's shape, colour, size and centroid (``Conversation.attributes``). They give a vision
  tower trained from scratch a direct signal about each region, which the LM loss alone
  delivers slowly: the demo model's stand-in for CLIP pretraining.
- augmentation ``grey_repaint``: held-out colour-shape pairs (no red star in training) let a
  tower learn "red, so not a star". Repainting every object a random grey (background turned
  to luminance) shows shapes without colour, so the shape signal cannot lean on colour. With
  the LM loss on, only conversations whose answers name no colour (labels) are repainted.

The one data module with torch and training imports: it registers with the trainer's
registries (leaf modules), which the trainer loads as a built-in plugin.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rgpt_model.data.attributes import COLOURS, SHAPES, SIZES
from rgpt_model.training.augment import register_augmentation
from rgpt_model.training.aux_losses import (
    AuxLoss,
    AuxLossInputs,
    AuxLossSetup,
    register_aux_loss,
)

if TYPE_CHECKING:
    from rgpt_model.training.config import StageSpec
    from rgpt_model.training.samples import Conversation

_LUMA = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
COLOUR_FREE_TASKS = frozenset({"classify"})  # answers that never name a colour


class RegionAttributeHeads(AuxLoss):
    """Linear probes on pooled region features: shape, colour, size, centroid (x, y)."""

    needs_lm = False

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.shape = nn.Linear(dim, len(SHAPES))
        self.colour = nn.Linear(dim, len(COLOURS))
        self.size = nn.Linear(dim, len(SIZES))
        self.centroid = nn.Linear(dim, 2)

    def forward(self, inputs: AuxLossInputs) -> torch.Tensor:
        attrs = inputs.batch.get("region_attributes")
        if attrs is None:
            raise ValueError("aux loss region_attributes needs region attributes: train on "
                             "synthetic scenes (data.source: synthetic) or drop it")
        return self.loss(inputs.region_features, attrs)

    def loss(self, feats: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
        """Summed cross-entropies and 10x the centroid MSE; ``attrs`` rows of (shape, colour,
        size, cx, cy), colour -1 for grey repaints (no colour to learn)."""
        x = self.norm(feats.float())
        attrs = attrs.to(x.device)
        colour = attrs[:, 1].long()
        colour_loss = (F.cross_entropy(self.colour(x), colour, ignore_index=-1)
                       if bool((colour >= 0).any()) else x.new_zeros(()))
        return (F.cross_entropy(self.shape(x), attrs[:, 0].long())
                + colour_loss
                + F.cross_entropy(self.size(x), attrs[:, 2].long())
                + 10.0 * F.mse_loss(self.centroid(x), attrs[:, 3:5]))


def region_attribute_heads(setup: AuxLossSetup) -> RegionAttributeHeads:
    """Factory of ``region_attributes`` (seed offset 1)."""
    torch.manual_seed(setup.cfg.seed + 1)
    return RegionAttributeHeads(setup.model.config.vision_config.hidden_size)


def grey_repaint(image: np.ndarray, masks: np.ndarray, rng: np.random.Generator,
                 noise_std: float = 5.0) -> np.ndarray:
    """(H, W, 3) uint8 copy: luminance background, each mask a random uniform grey + noise."""
    grey = image.astype(np.float32) @ _LUMA
    for mask in np.asarray(masks, dtype=bool):
        grey[mask] = rng.uniform(0.0, 255.0)
    grey += rng.normal(0.0, noise_std, size=grey.shape).astype(np.float32)
    out = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return np.repeat(out[:, :, None], 3, axis=2)


def shape_only_view(conv: Conversation, rng: np.random.Generator) -> Conversation:
    """``conv`` (a training ``Conversation``) with its objects repainted grey and its colour
    labels dropped."""
    attrs = None
    if conv.attributes is not None:
        attrs = conv.attributes.copy()
        attrs[:, 1] = -1
    paint = conv.masks if conv.object_masks is None else conv.object_masks  # the objects
    return dataclasses.replace(conv, image=grey_repaint(conv.image, paint, rng),
                               attributes=attrs)


def names_no_colour(conv: Conversation) -> bool:
    """Whether a grey repaint keeps ``conv``'s answers true, so that labels are learnt from
    shape, not from the colours the training split pairs with each shape."""
    return all(turn.task in COLOUR_FREE_TASKS for turn in conv.turns)


def grey_repaint_augmentation(conv: Conversation, rng: np.random.Generator,
                              stage: StageSpec) -> Conversation:
    """Augmentation ``grey_repaint``: every conversation in stages without the LM loss, only
    colour-free ones in stages with it."""
    if stage.lm_loss and not names_no_colour(conv):
        return conv
    return shape_only_view(conv, rng)


register_aux_loss("region_attributes", region_attribute_heads)
register_augmentation("grey_repaint", grey_repaint_augmentation)
