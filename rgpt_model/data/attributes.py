"""Closed vocabulary of the synthetic scenes: shapes, colours, sizes and held-out pairs.

Kept small on purpose so a word-level tokenizer covers every text the generator writes.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "hexagon",
    "cross",
    "diamond",
    "heart",
)

# Saturated, well separated RGB values; backgrounds use muted mid-tones so every colour
# (including white and black) stands out.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (35, 70, 225),
    "yellow": (240, 220, 30),
    "orange": (250, 135, 20),
    "purple": (145, 45, 190),
    "white": (248, 248, 248),
    "black": (18, 18, 18),
}

# Object extent (bounding diameter) as a fraction of min(height, width).
SIZES: dict[str, float] = {"small": 0.15, "medium": 0.23, "large": 0.33}

# The same words as extent ranges of the frame's shorter side (SceneConfig.size_ranges): the
# documented 15 / 23 / 33 % +-8 % bands, with "small" reaching down to 5 % so real frames'
# small objects (issue 20, condition d) keep a word. The gaps between the bands stay empty.
SIZE_RANGES: dict[str, tuple[float, float]] = {
    "small": (0.05, 0.15 * 1.08),
    "medium": (0.23 * 0.92, 0.23 * 1.08),
    "large": (0.33 * 0.92, 0.33 * 1.08),
}

# Colour-shape pairs never shown in train/val; the test split always contains at least one.
# One pair per shape and one per colour, so every word is still seen in training.
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "star"),
    ("green", "circle"),
    ("blue", "heart"),
    ("yellow", "square"),
    ("orange", "hexagon"),
    ("purple", "triangle"),
    ("white", "cross"),
    ("black", "diamond"),
)

SPLITS: tuple[str, ...] = ("train", "val", "test")


def all_pairs() -> list[tuple[str, str]]:
    """Every (colour, shape) pair in a fixed order."""
    return [(c, s) for c in COLOURS for s in SHAPES]


def seen_pairs() -> list[tuple[str, str]]:
    """Pairs allowed in train and val."""
    held = set(HELD_OUT_PAIRS)
    return [p for p in all_pairs() if p not in held]


def allowed_pairs(split: str) -> list[tuple[str, str]]:
    """Pairs that may appear in a scene of ``split`` (test may use every pair)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return all_pairs() if split == "test" else seen_pairs()
