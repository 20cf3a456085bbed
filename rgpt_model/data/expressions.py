"""Referring expressions for synthetic scenes, with programmatic uniqueness checks.

Every positive expression is evaluated against all regions of the scene and kept only if it
matches exactly one; negatives match none. Spatial predicates are three-valued (True, False,
None = too close to call) and any expression with an undecidable object is dropped, so no
expression depends on a borderline pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rgpt_model.data.attributes import COLOURS, SHAPES, SIZES
from rgpt_model.data.scene import ReferringExpression, Region

# Attribute combinations, shortest first (the order used to pick the shortest unique name).
ATTRIBUTE_COMBOS: tuple[tuple[str, ...], ...] = (
    ("shape",),
    ("colour",),
    ("size",),
    ("colour", "shape"),
    ("size", "shape"),
    ("size", "colour"),
    ("size", "colour", "shape"),
)
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
DIRECTIONS: tuple[str, ...] = ("leftmost", "rightmost", "topmost", "bottommost")

Filters = dict[str, str]


def describe(filters: Filters) -> str:
    """Noun phrase for attribute filters, e.g. {"size": "large"} -> "large object"."""
    words = [filters.get("size"), filters.get("colour"), filters.get("shape") or "object"]
    return " ".join(w for w in words if w)


def matches(r: Region, filters: Filters) -> bool:
    """Whether region ``r`` has every attribute in ``filters``."""
    return all(getattr(r, k) == v for k, v in filters.items())


def select(regions: Sequence[Region], filters: Filters) -> list[Region]:
    return [r for r in regions if matches(r, filters)]


def filters_of(r: Region, combo: Sequence[str]) -> Filters:
    return {k: getattr(r, k) for k in combo}


def unique_names(regions: Sequence[Region], prefer_colour_shape: bool = False) -> dict[int, str]:
    """Region id -> shortest attribute phrase naming it uniquely (no article).

    Falls back to the full "size colour shape" phrase when no combination is unique.
    ``prefer_colour_shape`` (captions) only tries "colour shape" then "size colour shape".
    """
    out: dict[int, str] = {}
    combos = ATTRIBUTE_COMBOS
    if prefer_colour_shape:
        combos = (("colour", "shape"), ("size", "colour", "shape"))
    for r in regions:
        name = None
        for combo in combos:
            f = filters_of(r, combo)
            if len(select(regions, f)) == 1:
                name = describe(f)
                break
        out[r.id] = name or describe(filters_of(r, ("size", "colour", "shape")))
    return out


def relation_holds(a: Region, b: Region, rel: str, margin: float) -> bool | None:
    """``a`` <rel> ``b`` by centroid; None when the offset is within ``margin`` pixels."""
    dx = a.centroid[0] - b.centroid[0]
    dy = a.centroid[1] - b.centroid[1]
    d = {"left of": -dx, "right of": dx, "above": -dy, "below": dy}[rel]
    if abs(d) < margin:
        return None
    return d > 0


def _superlative(
    group: Sequence[Region], key: Callable[[Region], float], ok_gap: Callable[[float, float], bool]
) -> Region | None:
    ranked = sorted(group, key=key)
    if len(ranked) < 2 or not ok_gap(key(ranked[0]), key(ranked[1])):
        return None
    return ranked[0]


def _groups(regions: Sequence[Region], min_size: int) -> list[Filters]:
    """Distinct attribute filters (plus "any object") selecting at least ``min_size`` regions."""
    seen: set[tuple] = set()
    out: list[Filters] = []
    for f in [{}] + [filters_of(r, c) for c in ATTRIBUTE_COMBOS for r in regions]:
        key = tuple(sorted(f.items()))
        if key in seen or len(select(regions, f)) < min_size:
            continue
        seen.add(key)
        out.append(f)
    return out


def attribute_expressions(regions: Sequence[Region]) -> list[ReferringExpression]:
    """ "the red circle", "the large triangle"... for every unique attribute combination."""
    out = []
    for r in regions:
        for combo in ATTRIBUTE_COMBOS:
            f = filters_of(r, combo)
            if len(select(regions, f)) == 1:
                out.append(ReferringExpression(f"the {describe(f)}", [r.id], "attribute"))
    return out


def superlative_expressions(
    regions: Sequence[Region], margin: float, area_ratio: float = 1.3
) -> list[ReferringExpression]:
    """ "the leftmost square", "the largest object" where the winner leads by a clear margin."""
    out = []
    for f in _groups(regions, 2):
        group = select(regions, f)
        noun = describe(f)
        keys: dict[str, Callable[[Region], float]] = {
            "leftmost": lambda r: r.centroid[0],
            "rightmost": lambda r: -r.centroid[0],
            "topmost": lambda r: r.centroid[1],
            "bottommost": lambda r: -r.centroid[1],
        }
        for word, key in keys.items():
            best = _superlative(group, key, lambda a, b: b - a >= margin)
            if best is not None:
                out.append(ReferringExpression(f"the {word} {noun}", [best.id], "superlative"))
        if "size" in f:
            continue
        for word, sign in (("largest", -1.0), ("smallest", 1.0)):
            best = _superlative(
                group,
                lambda r, s=sign: s * r.full_area,
                lambda a, b: max(abs(a), abs(b)) >= area_ratio * min(abs(a), abs(b)),
            )
            vis = sorted(group, key=lambda r, s=sign: s * r.area)[0]
            if best is not None and vis.id == best.id:
                out.append(ReferringExpression(f"the {word} {noun}", [best.id], "superlative"))
    return out


def relation_expressions(
    regions: Sequence[Region],
    margin: float,
    unique_subjects: bool = False,
    anchor_rng: np.random.Generator | None = None,
) -> tuple[list[ReferringExpression], list[ReferringExpression]]:
    """Positive and negative "the circle left of the green star" expressions.

    Targets are attribute groups (any size, so a lone object also yields negatives); the
    anchor never belongs to the target group. Positives need the relation to pick one of
    several objects ("ambiguous_subject"); ``unique_subjects`` adds those whose subject
    phrase alone picks the object ("unique_subject"), whose answer is that object. The anchor
    is named by its shortest unique phrase, or with ``anchor_rng`` by a random unique one
    ("the blue square" where "the square" would do).
    """
    names = unique_names(regions)
    anchors = [
        b
        for b in regions
        if len(select(regions, {"shape": b.shape, "colour": b.colour, "size": b.size})) == 1
    ]
    options = ({b.id: _unique_names_of(b, regions) for b in anchors}
               if anchor_rng is not None else {})
    pos: list[ReferringExpression] = []
    neg: list[ReferringExpression] = []
    for f in _groups(regions, 1):
        if not f:
            continue
        group = select(regions, f)
        for b in anchors:
            if b in group:
                continue
            anchor = (names[b.id] if anchor_rng is None
                      else options[b.id][int(anchor_rng.integers(len(options[b.id])))])
            for rel in RELATIONS:
                vals = [relation_holds(g, b, rel, margin) for g in group]
                if any(v is None for v in vals):
                    continue
                hit = [g.id for g, v in zip(group, vals, strict=True) if v]
                text = f"the {describe(f)} {rel} the {anchor}"
                if len(hit) == 1 and len(group) > 1:
                    pos.append(ReferringExpression(text, hit, "relation", "ambiguous_subject"))
                elif len(hit) == 1 and unique_subjects:
                    pos.append(ReferringExpression(text, hit, "relation", "unique_subject"))
                elif not hit:
                    neg.append(ReferringExpression(text, [], "absent_relation"))
    return pos, neg


def _unique_names_of(r: Region, regions: Sequence[Region]) -> list[str]:
    """Every attribute phrase that names ``r`` alone (computed once per anchor)."""
    return [describe(filters_of(r, c)) for c in ATTRIBUTE_COMBOS
            if len(select(regions, filters_of(r, c))) == 1]


def absent_subkind(regions: Sequence[Region], filters: Filters) -> str:
    """"near_miss" when changing one attribute of ``filters`` fits a present object, else
    "random" (the definition ``near_miss_expressions`` builds from)."""
    for r in regions:
        if sum(getattr(r, k) != v for k, v in filters.items()) == 1:
            return "near_miss"
    return "random"


def absent_expressions(
    regions: Sequence[Region],
    rng: np.random.Generator,
    pairs: Sequence[tuple[str, str]],
    count: int,
) -> list[ReferringExpression]:
    """Attribute combinations matching no region, drawn only from ``pairs`` (the split's)."""
    cands: list[Filters] = []
    for colour, shape in pairs:
        cands.append({"colour": colour, "shape": shape})
        for size in SIZES:
            cands.append({"size": size, "colour": colour, "shape": shape})
    cands += [{"colour": c} for c in COLOURS] + [{"shape": s} for s in SHAPES]
    cands = [f for f in cands if not select(regions, f)]
    if not cands or count <= 0:
        return []
    idx = rng.choice(len(cands), size=min(count, len(cands)), replace=False)
    return [ReferringExpression(f"the {describe(cands[i])}", [], "absent",
                                absent_subkind(regions, cands[i])) for i in sorted(idx)]


def near_miss_expressions(
    regions: Sequence[Region], pairs: Sequence[tuple[str, str]]
) -> list[ReferringExpression]:
    """Absent phrases one attribute away from a present object ("the red square" beside a red
    circle), including lone-attribute ones ("the diamond"); colour-shape pairs only from
    ``pairs``.

    Random absent phrases rarely sit this close to a scene's objects, and a model trained on
    them answers such phrases with an object that shares the other words (stage-15 model, val:
    in 50 of 56 wrong answers to "size colour shape" absent phrases the object had another
    shape).
    """
    allowed = set(pairs)
    values = {"shape": SHAPES, "colour": COLOURS, "size": SIZES}
    seen: set[str] = set()
    out: list[ReferringExpression] = []
    for r in regions:
        for combo in ATTRIBUTE_COMBOS:
            for attr in combo:
                for value in values[attr]:
                    if value == getattr(r, attr):
                        continue
                    f = {**filters_of(r, combo), attr: value}
                    if "colour" in f and "shape" in f and (f["colour"], f["shape"]) not in allowed:
                        continue
                    text = f"the {describe(f)}"
                    if text not in seen and not select(regions, f):
                        seen.add(text)
                        out.append(ReferringExpression(text, [], "absent", "near_miss"))
    return out


def spatial_word(e: ReferringExpression) -> str | None:
    """The superlative or relation of an expression ("leftmost", "largest", "left of"), else
    None: evaluation reports accuracy per word, as position and size are learnt apart."""
    if e.kind == "superlative":
        return e.text.split()[1]
    if e.kind in ("relation", "absent_relation"):
        return next((r for r in RELATIONS if f" {r} the " in e.text), None)
    return None


def _sample(
    items: list[ReferringExpression], rng: np.random.Generator, k: int
) -> list[ReferringExpression]:
    if len(items) <= k:
        return items
    idx = sorted(rng.choice(len(items), size=k, replace=False))
    return [items[i] for i in idx]


def scene_expressions(
    regions: Sequence[Region],
    width: int,
    height: int,
    rng: np.random.Generator,
    pairs: Sequence[tuple[str, str]],
    max_relations: int = 8,
    max_negatives: int = 3,
    unique_subject_relations: bool = False,
    max_near_misses: int = 0,
) -> list[ReferringExpression]:
    """All attribute and superlative expressions plus sampled relation and negative ones.

    ``unique_subject_relations``: up to ``max_relations`` relations of each subkind, anchors
    named by any unique phrase; ``max_near_misses``: that many sampled near-miss phrases.
    """
    margin = 0.06 * min(width, height)
    out = attribute_expressions(regions)
    out += superlative_expressions(regions, margin=1.3 * margin)
    pos, neg = relation_expressions(regions, margin, unique_subject_relations,
                                    rng if unique_subject_relations else None)
    if unique_subject_relations:
        for subkind in ("ambiguous_subject", "unique_subject"):
            out += _sample([e for e in pos if e.subkind == subkind], rng, max_relations)
    else:
        out += _sample(pos, rng, max_relations)
    out += absent_expressions(regions, rng, pairs, max_negatives)
    out += _sample(neg, rng, max_negatives)
    if max_near_misses > 0:
        out += _sample(near_miss_expressions(regions, pairs), rng, max_near_misses)
    # Same text twice (e.g. from equal groups) would be redundant; keep the first.
    seen: set[str] = set()
    uniq = []
    for e in out:
        if e.text not in seen:
            seen.add(e.text)
            uniq.append(e)
    return uniq
