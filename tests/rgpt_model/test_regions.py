"""Region selection, prompts to masks (one path for node and CLI), known-label describing."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from rgpt_model.errors import InvalidMaskError, InvalidQueryError
from rgpt_model.masks import MaskStack
from rgpt_model.predictor import RGPTPredictor
from rgpt_model.region_prompts import RegionPrompt, prompts_to_masks, validate_prompts
from rgpt_model.regions import (
    check_region_count,
    describe_regions,
    outline_regions,
    select_regions,
)


def _labels() -> np.ndarray:
    lab = np.zeros((10, 12), np.int32)
    lab[0, :1] = 2  # 1 px
    lab[1:3, :4] = 5  # 8 px
    lab[4:8, :4] = 7  # 16 px
    lab[4:8, 6:10] = 9  # 16 px
    lab[9, :] = -3  # background
    return lab


def test_select_regions_floor_bound_and_order():
    lab = _labels()
    assert select_regions(lab) == [2, 5, 7, 9]
    assert select_regions(lab, min_area=2) == [5, 7, 9]
    assert select_regions(lab, max_regions=2) == [7, 9]
    stack = MaskStack.from_label_image(lab)
    assert select_regions(stack, min_area=8, max_regions=2) == [7, 9]


def test_explicit_ids_are_bounded():
    check_region_count([1, 2], 2)
    with pytest.raises(InvalidQueryError, match="max_regions=2"):
        check_region_count([1, 2, 3], 2)


def test_overlapping_boxes_keep_all_their_pixels():
    image = np.zeros((20, 20, 3), np.uint8)
    made = prompts_to_masks(image, [RegionPrompt(4, box=(0, 0, 10, 10), label="mug"),
                                    RegionPrompt(9, box=(5, 5, 10, 10))])
    assert made.stack.ids == (4, 9) and made.stack.areas() == [100, 100]
    assert made.labels == {4: "mug"} and made.empty_ids == []


def test_prompt_rules():
    image = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(InvalidQueryError, match="need SAM"):
        prompts_to_masks(image, [RegionPrompt(1, points=[(3, 3)], point_labels=[1])])
    with pytest.raises(InvalidQueryError, match="unique"):
        validate_prompts([RegionPrompt(1, box=(0, 0, 2, 2)), RegionPrompt(1, box=(4, 4, 2, 2))])
    with pytest.raises(InvalidQueryError, match="> 0"):
        validate_prompts([RegionPrompt(0, box=(0, 0, 2, 2))])
    with pytest.raises(InvalidMaskError, match="outside"):
        prompts_to_masks(image, [RegionPrompt(1, box=(30, 30, 2, 2))])


def test_prompts_with_sam_are_sam_masks():
    from rgpt_model.sam import SamPrompter
    from tests.tiny_sam import make_tiny_sam

    image = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    prompts = [RegionPrompt(3, box=(5, 4, 30, 20), label="cup"),
               RegionPrompt(7, points=[(60, 30)], point_labels=[1])]
    sam = SamPrompter(make_tiny_sam(), use_onnx=False)
    made = prompts_to_masks(image, prompts, sam)
    want = sam.predict(image, prompts).masks
    kept = [k for k in range(2) if want[k].any()]
    assert list(made.stack.ids) == [prompts[k].id for k in kept]
    assert all(np.array_equal(made.stack.masks[i], want[k]) for i, k in enumerate(kept))
    assert made.labels == {3: "cup"}


class _RowRecorder:
    """A real predictor on the same model whose processor records every prompt row it
    tokenizes as (task, region position in the frame)."""

    def __init__(self, predictor) -> None:
        processor = copy.copy(predictor.processor)
        self.rows: list[tuple[str, int]] = []
        real = processor.tokenize

        def tokenize(texts, region_lists=None, *args, **kw):
            for text, regions in zip(texts, region_lists, strict=True):
                task = "classify" if "category name" in text else "caption"
                self.rows.append((task, regions[0]))
            return real(texts, region_lists, *args, **kw)

        processor.tokenize = tokenize
        self.predictor = RGPTPredictor(predictor.model, processor)

    def ids(self, frame, task: str) -> set[int]:
        return {frame.region_ids[i] for t, i in self.rows if t == task}


def test_regions_with_known_labels_are_not_classified(predictor):
    image = np.random.default_rng(1).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    spy = _RowRecorder(predictor)
    encoded = []
    hook = predictor.model.region_encoder.register_forward_hook(lambda *_: encoded.append(1))
    try:
        frame = spy.predictor.encode(image, _labels(), [5, 7, 9])
        out = describe_regions(spy.predictor, frame, tasks=["classify", "caption"],
                               known_labels={7: "widget", 42: "ghost"}, max_new_tokens=2)
    finally:
        hook.remove()
    assert [d.region_id for d in out] == [5, 7, 9] and len(encoded) == 1
    assert (out[1].label, out[1].label_score) == ("widget", 1.0)
    assert spy.ids(frame, "classify") == {5, 9} and spy.ids(frame, "caption") == {5, 7, 9}
    # one decoding batch: the named region's caption shares it with the others' rows
    plain = spy.predictor.describe(frame, tasks=["classify", "caption"], max_new_tokens=2)
    assert [(d.label, d.caption) for d in out][::2] == [(d.label, d.caption) for d in plain][::2]
    assert out[1].caption == plain[1].caption
    spy.rows.clear()
    only = describe_regions(spy.predictor, frame.select([7]), tasks=["classify"],
                            known_labels={7: "w"})
    assert spy.rows == [] and (only[0].label, only[0].area) == ("w", 16)
    plain = describe_regions(spy.predictor, frame, tasks=["classify"], max_new_tokens=2)
    assert spy.ids(frame, "classify") == {5, 7, 9} and len(plain) == 3


def test_outline_regions_without_the_model():
    out = outline_regions(_labels(), [5, 9], {9: "box"})
    assert [(d.region_id, d.bbox, d.area, d.label) for d in out] == [
        (5, (0, 1, 4, 2), 8, ""), (9, (6, 4, 4, 4), 16, "box")]
