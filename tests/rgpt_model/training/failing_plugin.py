"""A plugin for the failure tests: an augmentation and an aux loss that raise on the rank named
by ``RGPT_TEST_FAILING_RANK`` (read from torchrun's ``RANK``), and pass everywhere else."""

from __future__ import annotations

import os

import torch

from rgpt_model.training.augment import register_augmentation
from rgpt_model.training.aux_losses import AuxLoss, AuxLossInputs, register_aux_loss

FAILING_RANK_VARIABLE = "RGPT_TEST_FAILING_RANK"


def _failing_here() -> bool:
    return os.environ.get("RANK", "0") == os.environ.get(FAILING_RANK_VARIABLE, "-1")


def fail_in_data(conv, rng, stage):
    """Raise while this rank prepares its data."""
    if _failing_here():
        raise ValueError(f"injected data failure on rank {os.environ['RANK']}")
    return conv


class FailInForward(AuxLoss):
    """Raise in the forward pass, after the vision tower ran (FSDP: inside its gathers)."""

    needs_lm = False

    def forward(self, inputs: AuxLossInputs) -> torch.Tensor:
        if _failing_here():
            raise ValueError(f"injected forward failure on rank {os.environ['RANK']}")
        return inputs.region_features.sum() * 0.0


register_augmentation("fail_in_data", fail_in_data)
register_aux_loss("fail_in_forward", lambda setup: FailInForward())
