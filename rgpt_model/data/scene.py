"""Data classes for one synthetic scene: regions, referring expressions, the scene itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Region:
    """One object of a scene; geometry is measured on its *visible* pixels."""

    id: int
    shape: str
    colour: str
    size: str
    bbox: tuple[int, int, int, int]  # x, y, w, h of the visible part
    area: int  # visible pixels
    full_area: int  # pixels before occlusion
    centroid: tuple[float, float]  # x, y of the visible part
    z: int  # paint order, 0 = bottom
    position: str = ""  # e.g. "top left", "center"
    brief_caption: str = ""
    detail_caption: str = ""

    @property
    def name(self) -> str:
        """Colour + shape, e.g. "red circle"."""
        return f"{self.colour} {self.shape}"

    @property
    def visible_fraction(self) -> float:
        return self.area / max(self.full_area, 1)


@dataclass
class ReferringExpression:
    """A phrase and the ids it singles out (exactly one), or none for a negative.

    ``subkind`` splits kinds whose parts a model may learn apart: a relation's subject phrase
    alone already picks the object ("unique_subject") or the relation is needed
    ("ambiguous_subject"); an absent phrase is one attribute away from a present object
    ("near_miss") or not ("random"); empty for the other kinds.
    """

    text: str
    target_ids: list[int]
    kind: str  # attribute | relation | superlative | absent | absent_relation
    subkind: str = ""


@dataclass
class Scene:
    """A rendered scene: RGB image, instance label image and its annotations."""

    image: np.ndarray  # HxWx3 uint8
    labels: np.ndarray  # HxW uint16, 0 = background, ids 1..N
    regions: list[Region]
    expressions: list[ReferringExpression] = field(default_factory=list)
    split: str = "train"
    index: int = 0
    seed: int = 0
    background: str = ""

    def region(self, region_id: int) -> Region:
        """Region by id (raises KeyError when absent)."""
        for r in self.regions:
            if r.id == region_id:
                return r
        raise KeyError(region_id)

    def to_json(self) -> dict:
        """JSON-serialisable annotations (no arrays)."""
        h, w = self.labels.shape
        return {
            "split": self.split,
            "index": self.index,
            "seed": self.seed,
            "height": int(h),
            "width": int(w),
            "background": self.background,
            "regions": [asdict(r) for r in self.regions],
            "expressions": [asdict(e) for e in self.expressions],
        }
