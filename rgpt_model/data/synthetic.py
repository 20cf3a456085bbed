"""Seeded, deterministic synthetic scene generator (shapes on textured backgrounds).

Each scene draws its own random stream from (seed, split, index), so any scene can be
regenerated alone and the same seed always gives byte-identical images and annotations.
Train and val scenes only use colour-shape pairs outside ``HELD_OUT_PAIRS``; every test scene
contains at least one held-out pair, which measures compositional generalisation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from rgpt_model.data.attributes import COLOURS, HELD_OUT_PAIRS, SIZES, SPLITS, allowed_pairs
from rgpt_model.data.backgrounds import BACKGROUND_KINDS, make_background
from rgpt_model.data.captions import (
    brief_caption,
    detail_caption,
    main_occluder,
    position_words,
)
from rgpt_model.data.expressions import scene_expressions, unique_names
from rgpt_model.data.scene import Region, Scene
from rgpt_model.data.shapes import shape_mask

log = logging.getLogger(__name__)

_SPLIT_CODE = {name: i for i, name in enumerate(SPLITS)}


@dataclass
class SceneConfig:
    """Knobs of the generator; defaults give 128x128 scenes with 2-6 objects."""

    height: int = 128
    width: int = 128
    min_objects: int = 2
    max_objects: int = 6
    size_jitter: float = 0.08  # relative jitter of the object extent
    min_visible_fraction: float = 0.5  # every object keeps at least this share of its pixels
    min_visible_pixels: int = 40
    overlap_prob: float = 0.35  # chance to place an object next to (over) an existing one
    repeat_prob: float = 0.5  # chance to reuse an existing colour or shape (makes REC harder)
    noise_std: float = 5.0
    colour_jitter: float = 10.0
    background: str | None = None  # "gradient", "stripes", "texture" or None (random)
    max_tries: int = 60
    max_relations: int = 8
    max_negatives: int = 3
    sizes: dict[str, float] = field(default_factory=lambda: dict(SIZES))
    # Knobs for real frames (issue 20); each default keeps the original scenes byte-identical.
    # Extent ranges (fractions of the shorter side) per size word, drawn uniformly instead of
    # ``sizes`` +- ``size_jitter``; attributes.SIZE_RANGES reaches down to 5 %.
    size_ranges: dict[str, tuple[float, float]] | None = None
    max_rotation_deg: float = 0.0  # each object turned by up to this much either way
    backgrounds: tuple[str, ...] = ("gradient", "stripes")  # drawn from when background=None
    noise_std_max: float | None = None  # pixel noise std drawn from [noise_std, noise_std_max]
    # Relations whose subject phrase alone picks the object ("the red circle left of the blue
    # square" with one red circle): without them a model learns that such a phrase means none.
    unique_subject_relations: bool = False
    max_near_misses: int = 0  # absent phrases one attribute away from a present object


@dataclass
class _Obj:
    shape: str
    colour: str
    size: str
    mask: np.ndarray


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Independent random stream per scene."""
    if split not in _SPLIT_CODE:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODE[split], index]))


def _pick_attributes(
    rng: np.random.Generator,
    objs: list[_Obj],
    pairs: list[tuple[str, str]],
    repeat_prob: float,
    sizes: list[str],
) -> tuple[str, str, str]:
    size = sizes[int(rng.integers(len(sizes)))]
    if objs and rng.random() < repeat_prob:
        ref = objs[int(rng.integers(len(objs)))]
        key = "colour" if rng.random() < 0.5 else "shape"
        cands = [p for p in pairs if (p[0] == ref.colour if key == "colour" else p[1] == ref.shape)]
        if cands:
            c, s = cands[int(rng.integers(len(cands)))]
            return s, c, size
    c, s = pairs[int(rng.integers(len(pairs)))]
    return s, c, size


def _visible_ok(objs: list[_Obj], new_mask: np.ndarray, cfg: SceneConfig) -> bool:
    """Would every existing object stay visible enough if ``new_mask`` is painted on top?"""
    cover = new_mask.copy()
    for o in reversed(objs):
        vis = o.mask & ~cover
        full = int(o.mask.sum())
        n = int(vis.sum())
        if n < cfg.min_visible_pixels or n < cfg.min_visible_fraction * full:
            return False
        cover |= o.mask
    return True


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Square dilation by ``r`` pixels (numpy only)."""
    out = mask.copy()
    h, w = mask.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] |= mask[
                max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
            ]
    return out


def _place(
    rng: np.random.Generator,
    objs: list[_Obj],
    shape: str,
    colour: str,
    extent: float,
    cfg: SceneConfig,
    rotation_deg: float = 0.0,
) -> np.ndarray | None:
    h, w = cfg.height, cfg.width
    r = extent / 2.0 + 1.0
    if 2 * r >= min(h, w):
        return None
    for _ in range(cfg.max_tries):
        if objs and rng.random() < cfg.overlap_prob:
            o = objs[int(rng.integers(len(objs)))]
            ys, xs = np.nonzero(o.mask)
            ang = rng.uniform(0, 2 * np.pi)
            dist = rng.uniform(0.45, 0.9) * (extent / 2 + np.sqrt(len(xs) / np.pi))
            cx = float(xs.mean() + dist * np.cos(ang))
            cy = float(ys.mean() + dist * np.sin(ang))
            if not (r <= cx <= w - r and r <= cy <= h - r):
                continue
        else:
            cx = float(rng.uniform(r, w - r))
            cy = float(rng.uniform(r, h - r))
        mask = shape_mask(shape, cx, cy, extent, h, w, rotation_deg)
        if int(mask.sum()) < cfg.min_visible_pixels:
            continue
        # Same-colour objects must not touch, or their outlines would merge in the image.
        same = [o for o in objs if o.colour == colour]
        if same and any((_dilate(mask, 2) & o.mask).any() for o in same):
            continue
        if _visible_ok(objs, mask, cfg):
            return mask
    return None


def _region_stats(mask: np.ndarray) -> tuple[tuple[int, int, int, int], int, tuple[float, float]]:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    bbox = (x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1)
    return bbox, int(len(xs)), (round(float(xs.mean()), 2), round(float(ys.mean()), 2))


def generate_scene(
    seed: int, index: int, split: str = "train", config: SceneConfig | None = None
) -> Scene:
    """Render scene ``index`` of ``split`` for ``seed`` (deterministic)."""
    cfg = config or SceneConfig()
    if cfg.min_objects < 1 or cfg.max_objects < cfg.min_objects:
        raise ValueError("need 1 <= min_objects <= max_objects")
    if cfg.size_ranges is not None and set(cfg.sizes) - set(cfg.size_ranges):
        raise ValueError(f"size_ranges {cfg.size_ranges} must give a range for every size word "
                         f"of sizes {sorted(cfg.sizes)} (see attributes.SIZE_RANGES)")
    bad = sorted(set(cfg.backgrounds) - set(BACKGROUND_KINDS))
    if bad or not cfg.backgrounds:
        raise ValueError(f"backgrounds {cfg.backgrounds} must be a non-empty choice among "
                         f"{BACKGROUND_KINDS}")
    rng = scene_rng(seed, split, index)
    h, w = cfg.height, cfg.width
    pairs = allowed_pairs(split)
    size_names = list(cfg.sizes)
    n_target = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    held_slot = int(rng.integers(n_target)) if split == "test" else -1

    objs: list[_Obj] = []
    attempts = 0
    while len(objs) < n_target and attempts < 4 * cfg.max_objects:
        attempts += 1
        if len(objs) == held_slot or (
            split == "test" and held_slot >= 0 and len(objs) == n_target - 1 and not _has_held(objs)
        ):
            c, s = HELD_OUT_PAIRS[int(rng.integers(len(HELD_OUT_PAIRS)))]
            size = size_names[int(rng.integers(len(size_names)))]
        else:
            s, c, size = _pick_attributes(rng, objs, pairs, cfg.repeat_prob, size_names)
        if attempts > 2 * cfg.max_objects:  # crowded: fall back to the smallest size
            size = min(size_names, key=lambda k: cfg.sizes[k])
        if cfg.size_ranges is None:
            jitter = 1.0 + rng.uniform(-cfg.size_jitter, cfg.size_jitter)
            extent = cfg.sizes[size] * min(h, w) * jitter
        else:
            extent = rng.uniform(*cfg.size_ranges[size]) * min(h, w)
        rotation = (rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg)
                    if cfg.max_rotation_deg > 0 else 0.0)
        mask = _place(rng, objs, s, c, extent, cfg, rotation)
        if mask is not None:
            objs.append(_Obj(s, c, size, mask))
    if len(objs) < cfg.min_objects or (split == "test" and not _has_held(objs)):
        raise RuntimeError(
            f"could not place {cfg.min_objects} objects in a {w}x{h} scene "
            f"(seed={seed}, split={split}, index={index}); use a larger image or fewer objects"
        )

    # Ids are a random permutation of 1..N so they carry no z-order information.
    ids = [int(i) + 1 for i in rng.permutation(len(objs))]
    labels = np.zeros((h, w), dtype=np.uint16)
    bg_kind = cfg.background
    bg_rng_kind = (cfg.backgrounds[int(rng.integers(len(cfg.backgrounds)))] if bg_kind is None
                   else bg_kind)
    image = make_background(rng, h, w, bg_rng_kind)
    for o, rid in zip(objs, ids, strict=True):
        col = np.asarray(COLOURS[o.colour], dtype=np.float32)
        col = col + rng.uniform(-cfg.colour_jitter, cfg.colour_jitter, size=3)
        image[o.mask] = col
        labels[o.mask] = rid
    noise_std = (cfg.noise_std if cfg.noise_std_max is None
                 else rng.uniform(cfg.noise_std, cfg.noise_std_max))
    image += rng.normal(0.0, noise_std, size=image.shape).astype(np.float32)
    image_u8 = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    regions: list[Region] = []
    full_masks: dict[int, np.ndarray] = {}
    for z, (o, rid) in enumerate(zip(objs, ids, strict=True)):
        bbox, area, cen = _region_stats(labels == rid)
        full_masks[rid] = o.mask
        regions.append(
            Region(
                id=rid,
                shape=o.shape,
                colour=o.colour,
                size=o.size,
                bbox=bbox,
                area=area,
                full_area=int(o.mask.sum()),
                centroid=cen,
                z=z,
                position=position_words(cen[0], cen[1], w, h),
            )
        )
    regions.sort(key=lambda r: r.id)
    names = unique_names(regions, prefer_colour_shape=True)
    for r in regions:
        r.brief_caption = brief_caption(r)
        r.detail_caption = detail_caption(
            r, regions, names, main_occluder(r, regions, full_masks, labels)
        )
    expressions = scene_expressions(regions, w, h, rng, pairs, cfg.max_relations, cfg.max_negatives,
                                    cfg.unique_subject_relations, cfg.max_near_misses)
    return Scene(
        image=image_u8,
        labels=labels,
        regions=regions,
        expressions=expressions,
        split=split,
        index=index,
        seed=seed,
        background=bg_rng_kind,
    )


def _has_held(objs: list[_Obj]) -> bool:
    held = set(HELD_OUT_PAIRS)
    return any((o.colour, o.shape) in held for o in objs)


def generate_scenes(
    count: int,
    seed: int = 0,
    split: str = "train",
    config: SceneConfig | None = None,
    start: int = 0,
) -> Iterator[Scene]:
    """Yield scenes ``start .. start+count-1`` of ``split``."""
    for i in range(start, start + count):
        yield generate_scene(seed, i, split, config)
