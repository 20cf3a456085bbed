"""Boxes and points (e.g. from a detector) to region masks: the one path for the node and the CLI.

A robot often has detector boxes, not instance masks. With a SAM model each prompt becomes a
SAM mask; without one, boxes become rectangles and point prompts are refused. The result is a
:class:`~rgpt_model.masks.MaskStack`, so regions whose boxes overlap each keep all their pixels
(a label image would have to give the shared pixels to one of them).

No torch here: the SAM model is passed in (``rgpt_model.sam.SamPrompter``), so callers that
only validate prompts stay light.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidQueryError
from .masks import MaskStack, boxes_to_masks


@dataclass
class RegionPrompt:
    """One region to segment: a box (x, y, w, h) and/or points ((x, y), label 1 fg / 0 bg)."""

    id: int
    box: tuple[float, float, float, float] | None = None
    points: Sequence[tuple[float, float]] = ()
    point_labels: Sequence[int] = ()
    label: str = ""

    def validate(self) -> None:
        if self.box is not None and (len(self.box) != 4 or self.box[2] <= 0 or self.box[3] <= 0):
            raise InvalidQueryError(
                f"prompt {self.id}: box must be (x, y, w, h) with w, h > 0, got {self.box}"
            )
        if len(self.points) != len(self.point_labels):
            raise InvalidQueryError(
                f"prompt {self.id}: {len(self.points)} points but {len(self.point_labels)} labels"
            )
        if self.box is None and not len(self.points):
            raise InvalidQueryError(f"prompt {self.id}: give a box or at least one point")
        if any(int(lab) not in (0, 1) for lab in self.point_labels):
            raise InvalidQueryError(f"prompt {self.id}: point labels must be 1 (fg) or 0 (bg)")


@dataclass
class PromptMasks:
    """Masks made from prompts: the non-empty ones with their ids, the labels the prompts
    carried (id -> name), and the ids whose prompt gave no pixel."""

    stack: MaskStack
    labels: dict[int, str] = field(default_factory=dict)
    empty_ids: list[int] = field(default_factory=list)


def validate_prompts(prompts: Sequence[RegionPrompt]) -> None:
    """Every prompt well formed, ids > 0 and unique (they become the region ids)."""
    if not prompts:
        raise InvalidQueryError("no prompts: give at least one box or point group")
    seen: set[int] = set()
    for k, p in enumerate(prompts):
        if int(p.id) <= 0 or int(p.id) in seen:
            raise InvalidQueryError(f"prompt {k}: id {p.id} must be > 0 and unique in the array")
        seen.add(int(p.id))
        p.validate()


def needs_sam(prompts: Sequence[RegionPrompt]) -> bool:
    """True when some prompt has points or no box (only SAM can segment those)."""
    return any(len(p.points) or p.box is None for p in prompts)


def prompts_to_masks(image: np.ndarray, prompts: Sequence[RegionPrompt], sam: Any = None
                     ) -> PromptMasks:
    """Masks for ``prompts`` on ``image`` (HxWx3): SAM masks when ``sam`` (a SamPrompter) is
    given, else rectangles from the boxes (point prompts then raise InvalidQueryError)."""
    validate_prompts(prompts)
    shape = tuple(np.shape(image)[:2])
    if sam is not None:
        masks = sam.predict(image, prompts).masks
    elif needs_sam(prompts):
        raise InvalidQueryError(
            "point prompts need SAM: give a local SAM checkpoint (node parameter sam_checkpoint, "
            "CLI --sam); boxes alone work without it"
        )
    else:
        masks = boxes_to_masks([p.box for p in prompts], shape)
    filled = [bool(m.any()) for m in masks]
    keep = [k for k, full in enumerate(filled) if full]
    ids = tuple(int(prompts[k].id) for k in keep)
    return PromptMasks(
        stack=MaskStack(np.asarray(masks)[keep].reshape((len(keep),) + shape), ids),
        labels={int(p.id): str(p.label) for p in prompts if p.label},
        empty_ids=[int(p.id) for p, full in zip(prompts, filled, strict=True) if not full],
    )


def parse_points(text: str) -> list[list[tuple[float, float, int]]]:
    """CLI syntax ``"x,y[,label];x,y|x,y"``: '|' separates regions, ';' points (label 1 = fg)."""
    regions: list[list[tuple[float, float, int]]] = []
    for group in text.split("|"):
        pts = []
        for part in group.split(";"):
            vals = [v for v in part.replace(" ", ",").split(",") if v]
            if not vals:
                continue
            if len(vals) not in (2, 3):
                raise InvalidQueryError(f"point {part!r} must be 'x,y' or 'x,y,label'")
            try:
                x, y = float(vals[0]), float(vals[1])
                lab = int(vals[2]) if len(vals) == 3 else 1
            except ValueError as exc:
                raise InvalidQueryError(f"point {part!r} must hold numbers") from exc
            pts.append((x, y, lab))
        if pts:
            regions.append(pts)
    return regions


def prompts_from_cli(boxes: Sequence[Sequence[float]],
                     point_groups: Sequence[Sequence[tuple[float, float, int]]],
                     first_id: int = 1) -> list[RegionPrompt]:
    """Boxes, then point groups, as prompts with consecutive ids from ``first_id``."""
    prompts = [RegionPrompt(id=first_id + k, box=tuple(float(v) for v in b))
               for k, b in enumerate(boxes)]
    for group in point_groups:
        prompts.append(RegionPrompt(id=first_id + len(prompts),
                                    points=[(x, y) for x, y, _ in group],
                                    point_labels=[lab for _, _, lab in group]))
    return prompts
