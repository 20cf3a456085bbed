"""masks.py utilities, prompt templates and answer parsers."""

from __future__ import annotations

import numpy as np
import pytest

from rgpt_model import prompts
from rgpt_model.errors import EmptyMaskError, InvalidMaskError, UnknownRegionError
from rgpt_model.masks import (
    MaskStack,
    boxes_to_masks,
    label_image_to_stack,
    mask_bbox,
    parse_boxes,
    stack_to_label_image,
    to_mask_stack,
)


def test_label_stack_roundtrip():
    lab = np.zeros((6, 8), np.uint16)
    lab[1:3, 1:4] = 7
    lab[4:, 5:] = 300
    stack, ids = label_image_to_stack(lab)
    assert ids == [7, 300] and stack.shape == (2, 6, 8)
    assert np.array_equal(stack_to_label_image(stack, ids), lab)
    assert mask_bbox(stack[0]) == (1, 1, 3, 2)
    sel, sel_ids = to_mask_stack(lab, (6, 8), region_ids=[300, 7])
    assert sel_ids == [300, 7] and np.array_equal(sel[0], lab == 300)
    with pytest.raises(UnknownRegionError):
        to_mask_stack(lab, (6, 8), region_ids=[5])


def test_ids_at_or_below_zero_are_background():
    lab = np.full((4, 6), -1, np.int32)
    lab[0, :2] = 5
    lab[2:, 3:] = -9
    stack, ids = label_image_to_stack(lab)
    assert ids == [5] and stack.shape == (1, 4, 6)
    with pytest.raises(UnknownRegionError, match="background"):
        to_mask_stack(lab, (4, 6), region_ids=[-9])


def test_mask_stack_keeps_overlapping_regions_whole():
    a = np.zeros((5, 5), bool)
    a[:3, :3] = True
    b = np.zeros((5, 5), bool)
    b[1:, 1:] = True  # shares a 2x2 corner with a
    both = MaskStack(np.stack([a, b]), (4, 9))
    stack, ids = to_mask_stack(both, (5, 5))
    assert ids == [4, 9] and stack[0].sum() == 9 and stack[1].sum() == 16
    sel, sel_ids = to_mask_stack(both, (5, 5), region_ids=[9])
    assert sel_ids == [9] and np.array_equal(sel[0], b)
    with pytest.raises(UnknownRegionError):
        to_mask_stack(both, (5, 5), region_ids=[1])
    with pytest.raises(InvalidMaskError, match="unique"):
        MaskStack(np.stack([a, b]), (4, 4))
    with pytest.raises(EmptyMaskError):
        to_mask_stack(MaskStack(np.zeros((1, 5, 5), bool), (2,)))
    merged = MaskStack.from_label_image(np.where(a, 3, 0)).concat(both.select([9]))
    assert merged.ids == (3, 9) and merged.areas() == [9, 16]


def test_stack_validation():
    with pytest.raises(EmptyMaskError):
        to_mask_stack(np.zeros((1, 4, 4), bool))
    with pytest.raises(InvalidMaskError):
        to_mask_stack(np.full((1, 4, 4), 3, np.uint8))
    with pytest.raises(InvalidMaskError):
        to_mask_stack(np.zeros((1, 1, 4, 4), bool))
    with pytest.raises(InvalidMaskError, match="differs"):
        to_mask_stack(np.ones((1, 4, 4), bool), (5, 4))


def test_boxes():
    assert parse_boxes("1,2,3,4; 5,6,7,8") == [(1, 2, 3, 4), (5, 6, 7, 8)]
    m = boxes_to_masks([(1, 2, 3, 4), (9.5, 9.5, 0.2, 0.2)], (10, 10))
    assert mask_bbox(m[0]) == (1, 2, 3, 4) and m[1].sum() == 1
    with pytest.raises(InvalidMaskError):
        boxes_to_masks([(20, 20, 3, 3)], (10, 10))
    with pytest.raises(InvalidMaskError):
        parse_boxes("1,2,3")


@pytest.mark.parametrize(
    "answer,expected",
    [
        ("Region [2]", [2]),
        ("region 2", [2]),
        ("region [ 3 ] .", [3]),
        ("Region [2] and Region [4]", [2, 4]),
        ("regions 1, 3", [1, 3]),
        ("No corresponding options found.", []),
        ("Region [9]", []),
        ("4", [4]),
    ],
)
def test_rec_parser(answer, expected):
    assert prompts.parse_rec_answer(answer, 4) == expected


def test_classification_parser():
    assert prompts.parse_classification_answer("A Dog.") == prompts.LabelMatch("dog", 1.0, True)
    assert prompts.parse_classification_answer("traffic lights").label == "traffic light"
    m = prompts.parse_classification_answer("it is a hot dog on a plate")
    assert m.label == "hot dog" and not m.exact and 0 < m.score < 1
    m = prompts.parse_classification_answer("laptp", ["mug", "laptop"])
    assert m.label == "laptop" and m.score > 0.8


def test_templates_and_conversation():
    q = prompts.classification_prompt(1)
    assert q.endswith("Answer the question using COCO-80 category names.")
    assert "<region1>" in q
    rec = prompts.rec_prompt("the red mug", 3)
    assert "<region1>, <region2>, <region3>" in rec and "Region [x]" in rec
    assert "mug, cup" in prompts.classification_prompt(2, ["mug", "cup"])
    text = prompts.conversation_prompt([("hi", "Region [1]"), ("and?", None)])
    assert text.startswith(prompts.SYSTEM_PROMPT + " USER: <image>\nhi ASSISTANT: Region [1]</s>")
    assert text.endswith("USER: and? ASSISTANT:")
    assert prompts.short_answer_prompt("color?").endswith("a single word or phrase.")
