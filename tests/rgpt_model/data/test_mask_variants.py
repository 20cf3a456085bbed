"""Mask variants (boxes, coarse segmenter-like masks) on real synthetic scene masks."""

from __future__ import annotations

import numpy as np
import pytest

from rgpt_model.data.mask_variants import (
    COARSE_KINDS,
    box_masks,
    coarse_masks,
    random_mask_variant,
)
from rgpt_model.data.synthetic import generate_scene
from rgpt_model.errors import EmptyMaskError, InvalidMaskError
from rgpt_model.masks import label_image_to_stack, mask_bbox


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    scene = generate_scene(0, 3, "test")
    return label_image_to_stack(scene.labels)[0]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_box_masks_are_the_filled_bounding_rectangles(stack):
    boxes = box_masks(stack)
    assert boxes.shape == stack.shape and boxes.dtype == np.bool_
    for m, b in zip(stack, boxes, strict=True):
        x, y, w, h = mask_bbox(m)
        assert mask_bbox(b) == (x, y, w, h)
        assert b[y:y + h, x:x + w].all() and b.sum() == w * h  # a full rectangle, nothing else
        assert not (m & ~b).any()  # covers the mask


@pytest.mark.parametrize("kind", COARSE_KINDS)
def test_coarse_masks_stay_non_empty_and_near_the_original(stack, kind):
    out = coarse_masks(stack, kind, np.random.default_rng(1))
    assert out.shape == stack.shape and out.dtype == np.bool_
    for m, c in zip(stack, out, strict=True):
        assert c.any()
        assert _iou(m, c) > 0.4
        ys, xs = np.nonzero(m)
        cy, cx = np.nonzero(c)
        assert abs(cy.mean() - ys.mean()) < 4 and abs(cx.mean() - xs.mean()) < 4


def test_each_coarse_kind_changes_the_mask_the_way_it_says(stack):
    rng = np.random.default_rng(2)
    dilated = coarse_masks(stack, "dilate", rng, radius=2)
    eroded = coarse_masks(stack, "erode", rng, radius=1)
    hull = coarse_masks(stack, "hull", rng)
    jitter = coarse_masks(stack, "jitter", rng, amplitude=2)
    for m, d, e, h, j in zip(stack, dilated, eroded, hull, jitter, strict=True):
        assert not (m & ~d).any() and d.sum() > m.sum()
        assert not (e & ~m).any() and e.sum() < m.sum()
        assert not (m & ~h).any()
        assert (j != m).any()
        assert not (j & ~coarse_masks(m[None], "dilate", rng, radius=3)[0]).any()


def test_ellipse_follows_the_orientation_of_an_elongated_mask():
    from skimage.draw import polygon2mask

    bar = polygon2mask((100, 100), np.array([[20, 30], [30, 20], [80, 70], [70, 80]]))
    out = coarse_masks(bar[None], "ellipse", np.random.default_rng(0))[0]
    assert _iou(bar, out) > 0.7


def test_erosion_of_a_tiny_mask_keeps_a_core():
    tiny = np.zeros((1, 20, 20), bool)
    tiny[0, 5:7, 5:8] = True
    out = coarse_masks(tiny, "erode", np.random.default_rng(0), radius=5)
    assert out.any() and not (out & ~tiny).any()


def test_random_variant_draws_by_weights(stack):
    rng = np.random.default_rng(3)
    kinds = [random_mask_variant(stack, rng, {"box": 1.0})[1] for _ in range(3)]
    assert kinds == ["box"] * 3
    out, kind = random_mask_variant(stack, rng, {"exact": 1.0})
    assert kind == "exact" and (out == stack).all()
    seen = {random_mask_variant(stack, rng, {"coarse": 1.0})[1] for _ in range(30)}
    assert seen <= set(COARSE_KINDS) and len(seen) >= 3
    with pytest.raises(ValueError, match="unknown mask variant"):
        random_mask_variant(stack, rng, {"boxes": 1.0})
    with pytest.raises(ValueError, match="positive weight"):
        random_mask_variant(stack, rng, {"box": 0.0})


def test_bad_stacks_are_refused(stack):
    with pytest.raises(InvalidMaskError, match="boolean stack"):
        box_masks(stack.astype(np.uint8))
    empty = stack.copy()
    empty[0] = False
    with pytest.raises(EmptyMaskError, match="index \\[0\\]"):
        coarse_masks(empty, "dilate", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown coarse"):
        coarse_masks(stack, "blur", np.random.default_rng(0))
