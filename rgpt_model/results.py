"""What the predictor's tasks return: plain dataclasses the node and the CLI turn into messages
and JSON (no tensors)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class RegionDescription:
    """Per-region output of ``RGPTPredictor.describe``. bbox is (x, y, w, h) in pixels.

    ``reused``: the label and caption are the answer decoded ``age`` frames earlier, served
    again because the region had not changed (:mod:`rgpt_model.answer_reuse`); box and area
    are always this frame's."""

    region_id: int
    label: str
    label_score: float
    caption: str
    bbox: tuple[int, int, int, int]
    area: int
    reused: bool = False
    age: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ReferResult:
    """Output of ``RGPTPredictor.refer``; empty ``matched_ids`` = no region fits."""

    matched_ids: list[int]
    scores: list[float]
    raw_answer: str

    def to_dict(self) -> dict:
        return asdict(self)
