"""The evaluation conditions of issue 20: which scenes, which image and which masks.

Each condition is evaluated and reported apart. "exact" is the generator's default scene with
its exact masks (the old report). Controls: (a) ``flat_grey`` keeps the masks on a uniform grey
image, so any label above chance is read from the outline alone; (b) ``box`` and (c)
``coarse`` give masks as detectors and segmenters do. Conditions: (d) 4:3 frames with small
objects, (e) rotation, occlusion, textured noisy backgrounds, and all three at once.
Scene conditions are plain :class:`SceneConfig` overrides, so they follow the generator's knobs;
every condition also asks unique-subject relations and near-miss absent phrases (``REC_KNOBS``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from rgpt_model.data.attributes import SIZE_RANGES
from rgpt_model.data.mask_variants import COARSE_KINDS, box_masks, coarse_masks
from rgpt_model.data.synthetic import SceneConfig

GREY = 128  # the flat image's value on every channel
MASK_SOURCES: tuple[str, ...] = ("exact", "box", "coarse")

ROTATION = MappingProxyType({"max_rotation_deg": 30.0})
OCCLUSION = MappingProxyType({"min_visible_fraction": 0.4, "overlap_prob": 0.7})
TEXTURE = MappingProxyType({"background": "texture", "noise_std": 5.0, "noise_std_max": 20.0})
# Every condition asks the REC kinds the default generator leaves out: relations whose subject
# alone is unique, and absent phrases one attribute away from a present object.
REC_KNOBS = MappingProxyType({"unique_subject_relations": True, "max_near_misses": 3})


@dataclass(frozen=True)
class Condition:
    """One evaluation condition: scene knobs, image and mask source, what is asked."""

    name: str
    description: str
    scene_knobs: Mapping[str, Any] = field(default_factory=dict)
    flat_grey: bool = False  # replace the image by uniform grey, keep the masks
    masks: str = "exact"  # one of MASK_SOURCES
    rec: bool = True  # ask referring expressions too
    control: bool = False  # a control: its label scores stay out of the pooled AUROC

    def __post_init__(self) -> None:
        if self.masks not in MASK_SOURCES:
            raise ValueError(f"condition {self.name}: masks {self.masks!r} not in {MASK_SOURCES}")


def _conditions() -> dict[str, Condition]:
    small = {"size_ranges": dict(SIZE_RANGES)}
    robust = {**ROTATION, **OCCLUSION, **TEXTURE}
    items = [
        Condition("exact", "default 128x128 scenes, exact masks"),
        Condition("flat_grey", "(a) control: exact masks on a uniform grey image; labels above "
                  "chance come from the outline alone", flat_grey=True, rec=False, control=True),
        Condition("box", "(b) each mask replaced by its bounding box", masks="box"),
        Condition("coarse", "(c) coarse masks: dilated, eroded, jittered, convex hull, ellipse "
                  "(one kind per scene, in turn)", masks="coarse"),
        Condition("frame_320x240", "(d) 320x240 frames, objects down to 5 % of the shorter side",
                  {"height": 240, "width": 320, **small}),
        Condition("frame_640x480", "(d) 640x480 frames, objects down to 5 % of the shorter side",
                  {"height": 480, "width": 640, **small}),
        Condition("rotation", "(e) objects rotated up to 30 deg", dict(ROTATION)),
        Condition("occlusion", "(e) more overlap, objects down to 40 % visible", dict(OCCLUSION)),
        Condition("texture", "(e) textured backgrounds with stronger pixel noise", dict(TEXTURE)),
        Condition("robust_combined", "(e) rotation, occlusion and textured noisy backgrounds "
                  "together", robust),
    ]
    return {c.name: c for c in items}


CONDITIONS: dict[str, Condition] = _conditions()
CONDITION_NAMES: tuple[str, ...] = tuple(CONDITIONS)


def parse_conditions(text: str) -> list[str]:
    """``"all"``, ``"none"`` or a comma list of condition names -> names ("exact" is always
    evaluated: the report's top-level sections are that condition)."""
    text = text.strip()
    if text == "all":
        return list(CONDITION_NAMES)
    names = [] if text in ("", "none") else [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in CONDITIONS]
    if bad:
        raise ValueError(f"unknown condition(s) {bad}; choose from {', '.join(CONDITION_NAMES)}, "
                         "all or none")
    return ["exact"] + [n for n in CONDITION_NAMES if n in names and n != "exact"]


def scene_config(condition: Condition, base: SceneConfig | None = None
                 ) -> tuple[SceneConfig, list[str]]:
    """The condition's scene config on top of ``base`` plus ``REC_KNOBS``, and the knobs this
    generator lacks (left at their default and named in the report, so a missing knob is never
    silent)."""
    base = base or SceneConfig()
    knobs = {**REC_KNOBS, **condition.scene_knobs}
    known = {f.name for f in dataclasses.fields(SceneConfig)}
    use = {k: v for k, v in knobs.items() if k in known and v is not None}
    missing = sorted(k for k, v in knobs.items() if k not in known or v is None)
    return dataclasses.replace(base, **use), missing


def flat_grey_image(image: np.ndarray) -> np.ndarray:
    """A uniform grey image of the same size: every pixel (GREY, GREY, GREY)."""
    return np.full_like(image, GREY)


def condition_masks(stack: np.ndarray, condition: Condition, rng: np.random.Generator,
                    index: int) -> tuple[np.ndarray, str]:
    """The condition's masks for a scene's exact stack, and their kind ("exact", "box" or a
    coarse kind: scene ``index`` takes ``COARSE_KINDS[index % 5]``, so each kind gets a fifth
    of the scenes)."""
    if condition.masks == "box":
        return box_masks(stack), "box"
    if condition.masks == "coarse":
        kind = COARSE_KINDS[index % len(COARSE_KINDS)]
        return coarse_masks(stack, kind, rng), kind
    return stack, "exact"


def derangement(num: int, rng: np.random.Generator) -> list[int]:
    """A random permutation of ``range(num)`` that moves every item (when num >= 2): the
    mask-shuffle control and the new numbering of the same masks for the id check (g)."""
    if num < 2:
        return list(range(num))
    while True:
        p = [int(i) for i in rng.permutation(num)]
        if all(p[i] != i for i in range(num)):
            return p
