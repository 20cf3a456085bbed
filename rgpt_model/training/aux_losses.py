"""Auxiliary training losses, looked up by name: a run or stage lists ``aux_losses: {name: w}``.

The generic trainer knows no particular auxiliary loss: a module registers its losses when it
is imported (``register_aux_loss``), and the run config's ``plugins`` names the modules to
import (``rgpt_model.training.plugins``). A loss with parameters (a readout head) learns in
the stages that use it and is saved in checkpoints, never in the exported model.

This module imports nothing else of ``rgpt_model``, so the modules that register losses (the
synthetic data's, ``research``'s) can import it from any layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from rgpt_model.training.config import TrainConfig


@dataclass(frozen=True)
class AuxLossSetup:
    """What a factory may read to build its loss: the model being trained and the run.

    A factory that creates parameters seeds torch with ``cfg.seed`` plus an offset of its
    own, so that its head starts the same whichever other losses a run uses. ``built``: the
    losses built before this one (in the order they first appear in the run), so a loss may
    use the heads of one it requires (``register_aux_loss(..., requires=...)``) without
    owning them: they train and are saved with that loss.
    """

    model: nn.Module
    cfg: TrainConfig
    built: Mapping[str, nn.Module] = field(default_factory=dict)


@dataclass(frozen=True)
class AuxLossInputs:
    """What a loss may read on a training step.

    ``batch``: the collated tensors (``samples.collate``, plus ``region_attributes`` when the
    data carries them); ``region_features``: the pooled region features (R, D) before the
    connector; ``lm_outputs``: the LM's output (with ``attentions`` / ``hidden_states`` when
    an active loss asked for them), None for losses computed before the LM runs;
    ``refined_map``: the map the regions were pooled on (B, C, h, w), when an active loss
    ``needs_refined_map``.
    """

    batch: dict[str, torch.Tensor]
    region_features: torch.Tensor
    lm_outputs: Any = None
    refined_map: torch.Tensor | None = None


class AuxLoss(nn.Module):
    """Base of the auxiliary losses; ``forward(inputs)`` returns the unweighted loss."""

    needs_lm: ClassVar[bool] = True  # False: computed from region features, also in stages
    # without the LM loss
    needs_attentions: ClassVar[bool] = False  # the stage then runs the LM with eager attention
    needs_hidden_states: ClassVar[bool] = False
    needs_refined_map: ClassVar[bool] = False  # the region encoder then returns its map

    def applies(self, batch: dict[str, torch.Tensor]) -> bool:
        """Whether ``batch`` holds anything for this loss (else it is left out of the step)."""
        return True

    def forward(self, inputs: AuxLossInputs) -> torch.Tensor:
        raise NotImplementedError


AuxLossFactory = Callable[[AuxLossSetup], AuxLoss]
_FACTORIES: dict[str, AuxLossFactory] = {}
_REQUIRES: dict[str, tuple[str, ...]] = {}


def register_aux_loss(name: str, factory: AuxLossFactory, requires: tuple[str, ...] = ()
                      ) -> None:
    """Make ``name`` usable in ``aux_losses``; registering the same factory again is a no-op.
    ``requires``: losses that every stage using ``name`` must use too (``name`` shares their
    heads; the config check enforces it, and they are built first)."""
    old = _FACTORIES.get(name)
    if old is not None and _qualified(old) != _qualified(factory):
        raise ValueError(f"aux loss {name!r} is already registered by {_qualified(old)}")
    _FACTORIES[name] = factory
    _REQUIRES[name] = tuple(requires)


def aux_loss_requirements(name: str) -> tuple[str, ...]:
    """The losses ``name`` was registered as requiring (none for an unknown name)."""
    return _REQUIRES.get(name, ())


def registered_aux_losses() -> list[str]:
    """Names that ``aux_losses`` may use now (after the plugins were imported)."""
    return sorted(_FACTORIES)


def build_aux_loss(name: str, setup: AuxLossSetup) -> AuxLoss:
    """A new instance of the registered loss ``name``."""
    if name not in _FACTORIES:
        raise KeyError(f"aux loss {name!r} is not registered; registered: "
                       f"{registered_aux_losses()}")
    return _FACTORIES[name](setup)


def _qualified(factory: Callable) -> str:
    return f"{factory.__module__}.{getattr(factory, '__qualname__', repr(factory))}"
