"""Training scenes drawn from a weighted mixture of generator settings, with their masks drawn
from exact, box and coarse variants.

Issue 20: a model trained only on 128x128 upright scenes with exact masks read the class from
the mask's outline, shrank 4:3 frames, and failed on rotation, occlusion and textures. Each
training scene therefore picks its setting (frame size, object sizes, rotation, backgrounds)
and its mask source by weight. Both draws use their own random stream per (seed, step,
micro-step, scene), so a run without a mixture or variants sees exactly its old data.

Why the mask variants are a data setting (``data.mask_variants``, a stage's
``mask_variants``) and not a registered augmentation: the augmentations share one stream per
micro-batch, which every sample before a rank's part runs through, and a grey repaint must
paint the exact objects whichever masks the model is given; the scene's own stream keeps its
variant independent of the other samples and of the stage's augmentations (and the issue-20
run's data as it was).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from rgpt_model.data.mask_variants import VARIANT_GROUPS, random_mask_variant
from rgpt_model.data.synthetic import SceneConfig
from rgpt_model.training.samples import Conversation

_SCENE_FIELDS = {f.name for f in dataclasses.fields(SceneConfig)}
_TUPLE_FIELDS = ("backgrounds",)


def _scene_config(base: SceneConfig, entry: Mapping, where: str) -> SceneConfig:
    unknown = sorted(set(entry) - _SCENE_FIELDS - {"weight"})
    if unknown:
        raise ValueError(f"{where}: unknown SceneConfig field(s) {unknown}; "
                         f"known: {sorted(_SCENE_FIELDS)}")
    kwargs = {k: v for k, v in entry.items() if k != "weight"}
    for k in _TUPLE_FIELDS:
        if k in kwargs:
            kwargs[k] = tuple(kwargs[k])
    if kwargs.get("size_ranges") is not None:  # YAML lists -> (lo, hi) tuples
        kwargs["size_ranges"] = {w: (float(lo), float(hi))
                                 for w, (lo, hi) in kwargs["size_ranges"].items()}
    return dataclasses.replace(base, **kwargs)


def scene_mixture(data) -> tuple[list[SceneConfig], np.ndarray]:
    """(settings, probabilities) of a run's ``DataSpec``; one setting when ``scenes`` is empty.

    Entries start from the run's image size and object counts and override any SceneConfig
    field; ``weight`` (default 1) is the relative odds.
    """
    base = SceneConfig(height=data.image_height, width=data.image_width,
                       min_objects=data.min_objects, max_objects=data.max_objects)
    if not data.scenes:
        return [base], np.ones(1)
    configs, weights = [], []
    for i, entry in enumerate(data.scenes):
        if not isinstance(entry, Mapping):
            raise ValueError(f"data.scenes[{i}]: expected a mapping of SceneConfig fields")
        configs.append(_scene_config(base, entry, f"data.scenes[{i}]"))
        weights.append(float(entry.get("weight", 1.0)))
    w = np.asarray(weights)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"data.scenes weights must be >= 0 with a positive sum, got {weights}")
    return configs, w / w.sum()


def check_mask_variants(odds: Mapping[str, float], where: str) -> None:
    """Raise ValueError unless ``odds`` weighs exact/box/coarse with a positive sum."""
    unknown = sorted(set(odds) - set(VARIANT_GROUPS))
    values = [float(v) for v in odds.values()]
    if unknown or any(v < 0 for v in values) or sum(values) <= 0:
        raise ValueError(f"{where}: mask_variants needs non-negative odds of {VARIANT_GROUPS} "
                         f"with a positive sum, got {dict(odds)}")


def mix_rng(seed: int, step: int, micro: int, index: int) -> np.random.Generator:
    """The stream that picks scene ``index``'s setting and mask variant (not the turns')."""
    return np.random.default_rng([seed, step, micro, index, 2])


def pick_scene_config(configs: list[SceneConfig], probs: np.ndarray,
                      rng: np.random.Generator) -> SceneConfig:
    """One setting of the mixture (no draw when there is only one)."""
    if len(configs) == 1:
        return configs[0]
    return configs[int(rng.choice(len(configs), p=probs))]


def with_mask_variant(conv: Conversation, rng: np.random.Generator,
                      odds: Mapping[str, float]) -> Conversation:
    """``conv`` with its masks replaced by one variant (the same kind for all its regions);
    the exact masks stay as ``object_masks`` (repaints, dense targets)."""
    masks, kind = random_mask_variant(conv.masks, rng, odds)
    return dataclasses.replace(conv, masks=masks, object_masks=conv.masks, mask_kind=kind)
