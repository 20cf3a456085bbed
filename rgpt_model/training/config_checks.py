"""Checks of a run config that fail at load time, not hours into a run.

:func:`check_config` runs after the config's plugins were imported (``config_from_dict``): it
checks the registered names, the stages' values, and the issue-20 settings (scene mixture,
mask variants, warm start, aux losses that need another in the same stage).
"""

from __future__ import annotations

from rgpt_model.training.aux_losses import aux_loss_requirements
from rgpt_model.training.config import (
    NEGATIVE_REC_KINDS,
    POSITIVE_REC_KINDS,
    RUN_PRECISIONS,
    RUN_STRATEGIES,
    TRAINABLE_PARTS,
    TrainConfig,
)
from rgpt_model.training.plugins import check_registered


def check_config(cfg: TrainConfig) -> None:
    """Raise ValueError naming the first setting of ``cfg`` that cannot work."""
    check_registered("config", cfg.aux_losses)
    if cfg.model.mask_position_scale <= 0:
        raise ValueError("model.mask_position_scale must be > 0, "
                         f"got {cfg.model.mask_position_scale}")
    for s in cfg.stages:
        if s.lm_mode not in ("full", "lora", "frozen"):
            raise ValueError(f"stage {s.name}: lm_mode must be full, lora or frozen")
        bad = sorted(set(s.train) - set(TRAINABLE_PARTS))
        if bad:
            raise ValueError(f"stage {s.name}: unknown parts {bad}")
        if "position" in s.train and not cfg.model.mask_position:
            raise ValueError(f"stage {s.name} trains 'position', but the model has no mask "
                             "position encoder (set model.mask_position: true)")
        check_registered(f"stage {s.name}", s.aux_losses, s.augmentations)
        if s.region_identity_scale is not None and s.region_identity_scale <= 0:
            raise ValueError(f"stage {s.name}: region_identity_scale must be > 0, "
                             f"got {s.region_identity_scale}")
        if s.schedule_steps is not None and s.schedule_steps < s.steps:
            raise ValueError(f"stage {s.name}: schedule_steps ({s.schedule_steps}) must be at "
                             f"least steps ({s.steps})")
        if s.mask_position_scale is not None and (
                s.mask_position_scale <= 0 or not cfg.model.mask_position):
            raise ValueError(f"stage {s.name}: mask_position_scale needs a model with a mask "
                             f"position encoder (model.mask_position: true) and a value > 0, "
                             f"got {s.mask_position_scale}")
        for key, kinds in (("rec_kind_weights", POSITIVE_REC_KINDS),
                           ("negative_kind_weights", NEGATIVE_REC_KINDS)):
            weights = getattr(s, key)
            if weights is None:
                continue
            unknown = sorted(set(weights) - set(kinds))
            values = list(weights.values())
            if unknown or any(v < 0 for v in values) or sum(values) <= 0:
                raise ValueError(f"stage {s.name}: {key} needs non-negative weights of {kinds} "
                                 f"with a positive sum, got {weights}")
        if s.negative_rec_fraction is not None and not 0 <= s.negative_rec_fraction <= 1:
            raise ValueError(f"stage {s.name}: negative_rec_fraction must be in [0, 1], "
                             f"got {s.negative_rec_fraction}")
        if not 0 <= s.near_miss_rec_fraction <= 1:
            raise ValueError(f"stage {s.name}: near_miss_rec_fraction must be in [0, 1], "
                             f"got {s.near_miss_rec_fraction}")
        if s.max_objects is not None and s.max_objects < cfg.data.min_objects:
            raise ValueError(f"stage {s.name}: max_objects {s.max_objects} is below "
                             f"data.min_objects {cfg.data.min_objects}")
    if cfg.model.source not in ("scratch", "pretrained", "llava", "components"):
        raise ValueError(f"model.source {cfg.model.source!r} is not one of scratch, pretrained, "
                         "llava, components")
    if cfg.data.source not in ("synthetic", "jsonl", "annotations"):
        raise ValueError("data.source must be synthetic, jsonl or annotations")
    if cfg.strategy not in RUN_STRATEGIES or cfg.precision not in RUN_PRECISIONS:
        raise ValueError(f"strategy must be one of {RUN_STRATEGIES} and precision one of "
                         f"{RUN_PRECISIONS}, got {cfg.strategy!r} and {cfg.precision!r}")
    _check_issue20_settings(cfg)


def _check_issue20_settings(cfg: TrainConfig) -> None:
    """Scene mixture, mask variants, warm start, aux-loss requirements."""
    from rgpt_model.training.scene_mix import check_mask_variants, scene_mixture

    scene_mixture(cfg.data)  # raises on unknown SceneConfig fields or bad weights
    for where, odds in [("data", cfg.data.mask_variants)] + [
            (f"stage {s.name}", s.mask_variants) for s in cfg.stages]:
        if odds is not None:
            check_mask_variants(odds, where)
    for s in cfg.stages:
        losses = cfg.stage_aux_losses(s)
        for name in losses:
            missing = [r for r in aux_loss_requirements(name) if r not in losses]
            if missing:
                raise ValueError(f"stage {s.name}: aux loss {name} needs {missing} in the same "
                                 "stage (a weight > 0 in the run's or the stage's aux_losses)")
    ws = cfg.model.warm_start
    if ws is not None:
        bad = sorted(set(ws.parts) - set(TRAINABLE_PARTS))
        if not ws.path or bad or not ws.parts:
            raise ValueError(f"model.warm_start needs a path and parts among {TRAINABLE_PARTS}, "
                             f"got path {ws.path!r}, parts {ws.parts}")
        if cfg.model.source != "scratch":
            raise ValueError("model.warm_start loads parts into a model built from "
                             f"model.source: scratch, not {cfg.model.source!r}")
