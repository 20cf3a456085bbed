"""Modules that register aux losses and augmentations, and the check that a config names
only registered ones.

The synthetic world's training aids are built in (``synthetic_aux``; ``synthetic_dense_aux``,
issue 20); other modules come from the run config's
``plugins`` list (the demo recipe's REC attention and readout losses: ``research``, a
top-level folder of this repository that ``rgpt_model`` itself never imports).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping

from rgpt_model.training.augment import registered_augmentations
from rgpt_model.training.aux_losses import registered_aux_losses

BUILTIN_PLUGINS = ("rgpt_model.data.synthetic_aux",
                   "rgpt_model.data.synthetic_dense_aux")


def load_plugins(modules: Iterable[str] = ()) -> None:
    """Import the built-in plugins and ``modules`` (each registers what it defines)."""
    for name in (*BUILTIN_PLUGINS, *modules):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ValueError(f"plugin {name!r} could not be imported ({e}); run from the "
                             "repository root or put its folder on PYTHONPATH") from e


def check_registered(where: str, aux_losses: Mapping[str, float],
                     augmentations: Mapping[str, float] | None = None) -> None:
    """Raise ValueError naming what to import when ``where`` lists an unknown name or a
    weight out of range."""
    augmentations = augmentations or {}
    for kinds, names, known in (("aux losses", aux_losses, registered_aux_losses()),
                                ("augmentations", augmentations, registered_augmentations())):
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(
                f"{where}: unregistered {kinds} {unknown} (registered: {known}). A module "
                "registers them when imported: list it under the config's `plugins` (the REC "
                "attention and readout losses: `plugins: [research]`) or pass "
                "--set 'plugins=[MODULE]'")
    bad = {k: v for k, v in aux_losses.items() if not v >= 0}
    if bad:
        raise ValueError(f"{where}: aux loss weights must be >= 0, got {bad}")
    bad = {k: v for k, v in augmentations.items() if not 0 <= v <= 1}
    if bad:
        raise ValueError(f"{where}: augmentation probabilities must be in [0, 1], got {bad}")
