"""Each condition's transform does what it says, on real generated scenes."""

from __future__ import annotations

import numpy as np
import pytest

from rgpt_model.data.mask_variants import COARSE_KINDS
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.evaluation.condition_run import rec_category, sample_expressions
from rgpt_model.evaluation.conditions import (
    CONDITION_NAMES,
    CONDITIONS,
    GREY,
    Condition,
    condition_masks,
    derangement,
    flat_grey_image,
    parse_conditions,
    scene_config,
)
from rgpt_model.masks import label_image_to_stack, mask_bbox


@pytest.fixture(scope="module")
def scene():
    return generate_scene(0, 7, "test", scene_config(CONDITIONS["exact"])[0])


@pytest.fixture(scope="module")
def stack(scene):
    return label_image_to_stack(scene.labels)[0]


def test_flat_grey_image_is_uniform_grey(scene):
    grey = flat_grey_image(scene.image)
    assert grey.shape == scene.image.shape and grey.dtype == np.uint8
    assert (grey == GREY).all()
    assert scene.image.std() > 10  # the source was not grey already


def test_box_condition_gives_rectangles_covering_each_mask(stack):
    boxes, kind = condition_masks(stack, CONDITIONS["box"], np.random.default_rng(0), 0)
    assert kind == "box"
    for m, b in zip(stack, boxes, strict=True):
        x, y, w, h = mask_bbox(m)
        assert b.sum() == w * h and b[y:y + h, x:x + w].all() and not (m & ~b).any()


def test_coarse_condition_cycles_kinds_and_stays_near_the_mask(stack):
    seen = []
    for index in range(len(COARSE_KINDS)):
        out, kind = condition_masks(stack, CONDITIONS["coarse"], np.random.default_rng(index),
                                    index)
        seen.append(kind)
        for m, c in zip(stack, out, strict=True):
            assert c.any() and (m & c).sum() / (m | c).sum() > 0.4, kind
    assert seen == list(COARSE_KINDS)


def test_exact_condition_keeps_the_masks(stack):
    out, kind = condition_masks(stack, CONDITIONS["exact"], np.random.default_rng(0), 3)
    assert kind == "exact" and out is stack


def test_derangement_is_a_real_permutation_moving_every_item():
    rng = np.random.default_rng(0)
    for n in range(2, 8):
        for _ in range(5):
            p = derangement(n, rng)
            assert sorted(p) == list(range(n)) and all(p[i] != i for i in range(n))
    assert derangement(1, rng) == [0] and derangement(0, rng) == []


def test_parse_conditions():
    assert parse_conditions("all") == list(CONDITION_NAMES)
    assert parse_conditions("none") == ["exact"]
    assert parse_conditions("texture, box") == ["exact", "box", "texture"]
    with pytest.raises(ValueError, match="unknown condition"):
        parse_conditions("box,grey")


def test_scene_conditions_render_what_they_promise():
    cfg, missing = scene_config(CONDITIONS["frame_320x240"])
    assert missing == []
    s = generate_scene(0, 1, "test", cfg)
    assert s.image.shape == (240, 320, 3)
    side = min(s.labels.shape)
    extents = [max(r.bbox[2], r.bbox[3]) / side for r in s.regions]
    assert min(extents) < 0.33  # sizes drawn from the frame's bands
    texture, _ = scene_config(CONDITIONS["texture"])
    assert generate_scene(0, 1, "test", texture).background == "texture"
    occl, _ = scene_config(CONDITIONS["occlusion"])
    assert occl.min_visible_fraction == 0.4
    rot, _ = scene_config(CONDITIONS["rotation"], SceneConfig(height=96, width=96))
    assert rot.max_rotation_deg == 30.0 and rot.height == 96


def test_a_knob_the_generator_lacks_is_named():
    odd = Condition("odd", "a knob no generator has", {"no_such_knob": 1})
    cfg, missing = scene_config(odd)
    assert missing == ["no_such_knob"] and isinstance(cfg, SceneConfig)


def test_every_condition_asks_unique_subjects_and_near_misses():
    cfg, _ = scene_config(CONDITIONS["box"])
    cats = set()
    for i in range(12):
        cats |= {rec_category(e) for e in generate_scene(0, i, "test", cfg).expressions}
    assert {"relation_unique_subject", "relation_ambiguous_subject", "absent_near_miss",
            "attribute", "superlative"} <= cats


def test_expression_sample_takes_each_category(scene):
    rng = np.random.default_rng(0)
    chosen = sample_expressions(scene.expressions, rng, 1)
    cats = [rec_category(e) for e in chosen]
    assert sorted(cats) == sorted({rec_category(e) for e in scene.expressions})
    assert len(sample_expressions(scene.expressions, rng, 2)) > len(chosen)
