"""Replayable video of slowly moving synthetic objects: the input of the answer-reuse and
multi-stream benchmarks (``scripts/benchmark_reuse.py``; the node's benchmark can write the same
frames to a bag).

Why: reuse only pays on video where most regions barely change between frames, as a tracked
camera stream does. Each object drifts 1-2 px per frame in a straight line over a static
background (a fixed camera; only the sensor noise is new each frame); some objects are there
from the start, others appear later, and objects leave when their time is up or they drift out
of the image. Ids are stable for an object's whole life, as a tracker's are. Deterministic:
the same arguments give the same frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from rgpt_model.data.attributes import COLOURS, SIZES, seen_pairs
from rgpt_model.data.backgrounds import make_background
from rgpt_model.data.shapes import shape_mask

MIN_VISIBLE_PIXELS = 40  # fewer visible pixels: the object counts as gone (no id in the frame)


@dataclass(frozen=True)
class MovingObject:
    """One object's whole life: what it is, where it starts, how it moves, when it lives."""

    id: int
    shape: str
    colour: str
    size: str
    rgb: tuple[float, float, float]  # colour with this object's fixed jitter
    x: float  # centre at its first frame
    y: float
    vx: float  # px per frame
    vy: float
    first: int  # first frame it is drawn in
    last: int  # last frame it is drawn in

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    def centre(self, frame: int) -> tuple[float, float]:
        t = frame - self.first
        return self.x + self.vx * t, self.y + self.vy * t


@dataclass
class MovingFrame:
    """One frame: RGB image, label image (0 = background, ids stable across frames) and the
    name of every visible object."""

    index: int
    image: np.ndarray  # HxWx3 uint8
    labels: np.ndarray  # HxW uint16
    names: dict[int, str]


def moving_objects(frames: int, height: int = 240, width: int = 320, objects: int = 6,
                   seed: int = 0, speed: tuple[float, float] = (1.0, 2.0),
                   late_fraction: float = 0.4) -> list[MovingObject]:
    """``objects`` objects with speeds in ``speed`` px/frame; about ``late_fraction`` of them
    appear after the first frame, and about as many leave before the last one."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 21]))
    pairs = seen_pairs()
    extent_scale = min(height, width)
    out = []
    for k in range(objects):
        colour, shape = pairs[int(rng.integers(len(pairs)))]
        size = ("small", "medium", "large")[int(rng.integers(3))]
        r = SIZES[size] * extent_scale / 2 + 2
        angle = rng.uniform(0, 2 * np.pi)
        v = rng.uniform(*speed)
        first = int(rng.integers(1, max(2, frames // 2))) if rng.random() < late_fraction else 0
        leave_from = first + max(1, frames // 4)
        leaves = rng.random() < late_fraction and leave_from < frames
        last = int(rng.integers(leave_from, frames)) if leaves else frames - 1
        rgb = np.asarray(COLOURS[colour], np.float32) + rng.uniform(-10, 10, size=3)
        out.append(MovingObject(
            id=k + 1, shape=shape, colour=colour, size=size,
            rgb=tuple(float(c) for c in np.clip(rgb, 0, 255)),
            x=float(rng.uniform(r, width - r)), y=float(rng.uniform(r, height - r)),
            vx=float(v * np.cos(angle)), vy=float(v * np.sin(angle)), first=first, last=last))
    return out


def render_moving_frame(objects: list[MovingObject], index: int, background: np.ndarray,
                        seed: int = 0, noise_std: float = 5.0) -> MovingFrame:
    """Frame ``index``: live objects painted in id order (later ids on top) over
    ``background`` (HxWx3 float), plus this frame's sensor noise."""
    h, w = background.shape[:2]
    image = background.copy()
    labels = np.zeros((h, w), np.uint16)
    for obj in objects:
        if not obj.first <= index <= obj.last:
            continue
        cx, cy = obj.centre(index)
        extent = SIZES[obj.size] * min(h, w)
        mask = shape_mask(obj.shape, cx, cy, extent, h, w)
        image[mask] = obj.rgb
        labels[mask] = obj.id
    rng = np.random.default_rng(np.random.SeedSequence([seed, 21, index]))
    image = image + rng.normal(0.0, noise_std, size=image.shape)
    ids, counts = np.unique(labels, return_counts=True)
    for rid, n in zip(ids, counts, strict=True):
        if rid and n < MIN_VISIBLE_PIXELS:  # a sliver at the border or under others: gone
            labels[labels == rid] = 0
    names = {o.id: o.name for o in objects if o.id in set(np.unique(labels).tolist())}
    return MovingFrame(index, np.clip(np.rint(image), 0, 255).astype(np.uint8), labels, names)


def moving_sequence(frames: int = 60, height: int = 240, width: int = 320, objects: int = 6,
                    seed: int = 0, speed: tuple[float, float] = (1.0, 2.0)
                    ) -> Iterator[MovingFrame]:
    """The frames of one replayable sequence (see the module docstring), one at a time."""
    objs = moving_objects(frames, height, width, objects, seed, speed)
    bg_rng = np.random.default_rng(np.random.SeedSequence([seed, 21, 0, 1]))
    background = make_background(bg_rng, height, width)
    for index in range(frames):
        yield render_moving_frame(objs, index, background, seed)
