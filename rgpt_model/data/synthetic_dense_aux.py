"""Aux loss ``dense_region_attributes``: every refined-map cell of an object must name its
shape, colour and size (a training aid of the synthetic shapes world, issue 20).

Without a mask silhouette encoder the class must come from the refined image features under
the mask (the paper's claim). Supervising only the mask-pooled vector (``region_attributes``)
gave the from-scratch tower one signal per region, and after 600 steps its shape head was at
chance (21 %, chance 12.5 %) while colour was at 100 %: colour is the same in every cell, shape
is not. Asking every covered cell for its object's attributes (the same linear heads as
``region_attributes``, applied per cell, so that loss is required in the same stage) gives ~50x
more signals and makes each cell describe its object, so a box or a coarse mask, which pools
some cells of the background or a neighbour, still averages cells that know the class.
Training-only; targets come from the objects' exact masks (``object_masks`` when the model is
given box or coarse variants), never from the masks the model is given.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rgpt_model.training.aux_losses import (
    AuxLoss,
    AuxLossInputs,
    AuxLossSetup,
    register_aux_loss,
)

IGNORE = -1
MIN_COVER = 0.5  # a cell belongs to an object that covers at least this share of it
HEADS = "region_attributes"  # the loss whose heads this one applies per cell


def cell_targets(object_masks: torch.Tensor, attributes: np.ndarray | torch.Tensor,
                 grid: int) -> torch.Tensor:
    """(3, grid, grid) long: shape, colour and size index of the object covering each cell
    (IGNORE for background, mixed cells and colour-less grey repaints).

    object_masks: (R, S, S) float exact masks of one image in the model's input frame;
    attributes: (R, 5) rows of (shape, colour, size, cx, cy) as in ``Conversation.attributes``.
    """
    out = torch.full((3, grid, grid), IGNORE, dtype=torch.long, device=object_masks.device)
    if object_masks.shape[0] == 0:
        return out
    cover = F.interpolate(object_masks.float()[:, None], size=(grid, grid), mode="area")[:, 0]
    best, owner = cover.max(dim=0)
    keep = best >= MIN_COVER
    attrs = torch.as_tensor(attributes)[:, :3].to(object_masks.device, torch.long)
    for k in range(3):
        out[k][keep] = attrs[owner[keep], k]
    return out


def batch_cell_targets(batch: dict[str, torch.Tensor], grid: int) -> torch.Tensor:
    """(B, 3, grid, grid) targets of a collated batch: its ``object_masks`` (else ``masks``),
    ``region_attributes`` and ``region_image_index``."""
    masks = batch.get("object_masks", batch["masks"])
    index = batch["region_image_index"]
    attrs = batch["region_attributes"]
    return torch.stack([cell_targets(masks[index == b], attrs[index == b], grid)
                        for b in range(batch["pixel_values"].shape[0])])


def dense_aux_loss(heads, fmap: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropies of ``heads`` (the ``region_attributes`` heads) on every labelled
    cell of ``fmap`` (B, C, g, g) against ``targets`` (B, 3, g, g)."""
    if tuple(targets.shape[-2:]) != tuple(fmap.shape[-2:]):
        raise ValueError(f"cell targets {tuple(targets.shape)} do not fit the refined map "
                         f"{tuple(fmap.shape)}")
    x = heads.norm(fmap.permute(0, 2, 3, 1).float())
    total = fmap.new_zeros(())
    for k, head in enumerate((heads.shape, heads.colour, heads.size)):
        t = targets[:, k].to(x.device)
        if bool((t != IGNORE).any()):
            total = total + F.cross_entropy(head(x).permute(0, 3, 1, 2), t, ignore_index=IGNORE)
    return total


class DenseRegionAttributes(AuxLoss):
    """The ``region_attributes`` heads on every cell of the refined map (no weights of its
    own: the heads train and are saved with ``region_attributes``)."""

    needs_lm = False
    needs_refined_map = True

    def __init__(self, heads: torch.nn.Module) -> None:
        super().__init__()
        self.__dict__["heads"] = heads  # shared, not a submodule: saved and trained once

    def forward(self, inputs: AuxLossInputs) -> torch.Tensor:
        batch, fmap = inputs.batch, inputs.refined_map
        if batch.get("region_attributes") is None:
            raise ValueError("aux loss dense_region_attributes needs region attributes: train "
                             "on synthetic scenes (data.source: synthetic) or drop it")
        return dense_aux_loss(self.heads, fmap, batch_cell_targets(batch, fmap.shape[-1]))


def dense_region_attributes(setup: AuxLossSetup) -> DenseRegionAttributes:
    """Factory of ``dense_region_attributes``: needs ``region_attributes`` built first."""
    if HEADS not in setup.built:
        raise ValueError(f"aux loss dense_region_attributes applies the heads of {HEADS}: list "
                         f"{HEADS} before it (e.g. in the run's aux_losses)")
    return DenseRegionAttributes(setup.built[HEADS])


register_aux_loss("dense_region_attributes", dense_region_attributes, requires=(HEADS,))
