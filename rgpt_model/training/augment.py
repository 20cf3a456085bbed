"""Data augmentations, looked up by name: a stage lists ``augmentations: {name: probability}``.

Each conversation of a micro-batch is augmented with each listed probability, in the order
listed. One random stream per micro-batch, drawn from (seed, step, micro), feeds them all, so
a step's data still depends only on (seed, step). Modules register their augmentations when
imported, as aux losses do (``rgpt_model.training.plugins``); this module imports nothing
else of ``rgpt_model``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rgpt_model.training.config import StageSpec
    from rgpt_model.training.samples import Conversation

# (conversation, random stream, stage) -> the augmented conversation (or the same one, when
# the augmentation does not fit it)
Augmentation = Callable[["Conversation", np.random.Generator, "StageSpec"], "Conversation"]
_AUGMENTATIONS: dict[str, Augmentation] = {}


def register_augmentation(name: str, augmentation: Augmentation) -> None:
    """Make ``name`` usable in a stage's ``augmentations``."""
    old = _AUGMENTATIONS.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (
            augmentation.__module__, augmentation.__qualname__):
        raise ValueError(f"augmentation {name!r} is already registered by {old.__module__}")
    _AUGMENTATIONS[name] = augmentation


def registered_augmentations() -> list[str]:
    """Names that ``augmentations`` may use now (after the plugins were imported)."""
    return sorted(_AUGMENTATIONS)


def augment(conv: Conversation, rng: np.random.Generator, stage: StageSpec) -> Conversation:
    """``conv`` after the stage's augmentations, each applied with its probability."""
    for name, probability in stage.augmentations.items():
        if probability > 0 and rng.random() < probability:
            conv = _AUGMENTATIONS[name](conv, rng, stage)
    return conv
