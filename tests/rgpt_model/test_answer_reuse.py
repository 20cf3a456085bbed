"""AnswerReuse: cached answers while a region is unchanged; recomputed when the mask moves past
the IoU threshold, the feature cosine drops, the age runs out or the id disappears; disabled
reuse gives exactly today's answers; streams never share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rgpt_model.answer_reuse import AnswerReuse, ReusePlan, mask_iou
from rgpt_model.data.moving_scenes import moving_sequence
from rgpt_model.encoded_frame import EncodedFrame
from rgpt_model.errors import InvalidQueryError
from rgpt_model.results import RegionDescription

SIZE = (40, 60)


def _frame(boxes: dict[int, tuple[int, int]], features: dict[int, list[float]] | None = None
           ) -> EncodedFrame:
    """A frame whose region ``id`` is a 10x10 box at (y, x) with a chosen pooled feature."""
    ids = sorted(boxes)
    masks = np.zeros((len(ids),) + SIZE, bool)
    for k, rid in enumerate(ids):
        y, x = boxes[rid]
        masks[k, y : y + 10, x : x + 10] = True
    feats = torch.tensor([(features or {}).get(rid, [1.0, 0.0, 0.0]) for rid in ids])
    return EncodedFrame(torch.zeros(1, 1, 4), torch.zeros(len(ids), 4), feats.reshape(-1, 3),
                        ids, masks, SIZE)


def _decode(frame: EncodedFrame, plan: ReusePlan, tag: str) -> list[RegionDescription]:
    """Stand-in answers for the regions the plan says to decode (label names the frame)."""
    decoded = [RegionDescription(rid, f"{tag}-{rid}", 0.5, "", (0, 0, 1, 1), 1)
               for rid in plan.decode_ids]
    return plan.merge(frame.region_ids, decoded)


def _step(reuse: AnswerReuse, frame: EncodedFrame, tag: str, **kw) -> dict[int, tuple]:
    plan = reuse.plan(frame, **kw)
    descs = _decode(frame, plan, tag)
    reuse.update(frame, descs, **kw)
    return {d.region_id: (d.label, d.reused, d.age) for d in descs}


def test_unchanged_regions_reuse_their_answer_with_this_frames_geometry():
    reuse = AnswerReuse(iou_threshold=0.8, cosine_threshold=0.95, max_age=5)
    base = {1: (0, 0), 2: (20, 30)}
    assert _step(reuse, _frame(base), "f0") == {1: ("f0-1", False, 0), 2: ("f0-2", False, 0)}
    moved = _frame({1: (0, 1), 2: (20, 30)})  # 1 px: IoU 0.82
    plan = reuse.plan(moved)
    assert plan.decode_ids == [] and plan.ages == {1: 1, 2: 1}
    assert plan.reused[1].label == "f0-1" and plan.reused[1].bbox == (1, 0, 10, 10)
    reuse.update(moved, plan.merge(moved.region_ids, []))
    # compared with the mask last *answered*: 2 px from it now (IoU 0.67) -> decoded again
    assert _step(reuse, _frame({1: (0, 2), 2: (20, 30)}), "f2") == {
        1: ("f2-1", False, 0), 2: ("f0-2", True, 2)}


def test_feature_cosine_drop_age_and_disappearing_ids_recompute():
    reuse = AnswerReuse(iou_threshold=0.8, cosine_threshold=0.95, max_age=2)
    base = {1: (0, 0), 2: (20, 30), 3: (25, 0)}
    _step(reuse, _frame(base), "f0")
    turned = {2: [0.9, 0.5, 0.0]}  # cosine 0.87 with the answered feature
    assert _step(reuse, _frame(base, turned), "f1") == {
        1: ("f0-1", True, 1), 2: ("f1-2", False, 0), 3: ("f0-3", True, 1)}
    gone = {1: (0, 0), 2: (20, 30)}  # id 3 left
    assert _step(reuse, _frame(gone, turned), "f2") == {1: ("f0-1", True, 2),
                                                       2: ("f1-2", True, 1)}
    # age 3 > max_age for 1; 3 came back unchanged but is new again
    assert _step(reuse, _frame(base, turned), "f3") == {
        1: ("f3-1", False, 0), 2: ("f1-2", True, 2), 3: ("f3-3", False, 0)}


def test_settings_and_known_labels_must_match():
    reuse = AnswerReuse(0.5, 0.5, 10)
    frame = _frame({1: (0, 0), 2: (20, 30)})
    _step(reuse, frame, "f0", key=("classify",), named={2: "mug"})
    assert _step(reuse, frame, "f1", key=("classify",), named={2: "mug"}) == {
        1: ("f0-1", True, 1), 2: ("f0-2", True, 1)}
    assert _step(reuse, frame, "f2", key=("classify",), named={2: "cup"})[2] == (
        "f2-2", False, 0)
    assert _step(reuse, frame, "f3", key=("caption",), named={2: "cup"}) == {
        1: ("f3-1", False, 0), 2: ("f3-2", False, 0)}


@pytest.mark.parametrize("args", [(0.0, 0.9, 5), (0.8, 0.0, 5), (0.8, 0.9, 0)])
def test_zero_threshold_or_age_disables_reuse(args):
    reuse = AnswerReuse(*args)
    frame = _frame({1: (0, 0)})
    assert not reuse.enabled
    for k in range(3):
        assert _step(reuse, frame, f"f{k}") == {1: (f"f{k}-1", False, 0)}
    assert reuse.changed_since(reuse.snapshot(frame), frame)


def test_streams_never_share_answers():
    a, b = AnswerReuse(0.5, 0.5, 10), AnswerReuse(0.5, 0.5, 10)
    frame = _frame({1: (0, 0)})
    _step(a, frame, "a0")
    assert _step(b, frame, "b0") == {1: ("b0-1", False, 0)}
    assert _step(a, frame, "a1") == {1: ("a0-1", True, 1)}
    assert _step(b, frame, "b1") == {1: ("b0-1", True, 1)}


def test_changed_since_for_cached_referring_answers():
    reuse = AnswerReuse(0.8, 0.95, 2)
    first = _frame({1: (0, 0), 2: (20, 30)})
    snap = reuse.snapshot(first)
    assert not reuse.changed_since(snap, _frame({1: (0, 1), 2: (20, 30)}))
    assert reuse.changed_since(snap, _frame({1: (0, 4), 2: (20, 30)}))  # one candidate moved
    assert reuse.changed_since(snap, _frame({1: (0, 0)}))  # a candidate left
    assert reuse.changed_since(snap, _frame({1: (0, 0), 2: (20, 30)}, {2: [0, 1.0, 0]}))
    for k in range(3):  # the age runs out too
        _step(reuse, first, f"f{k}")
    assert reuse.changed_since(snap, first)


def test_bad_settings_are_refused():
    with pytest.raises(InvalidQueryError, match="iou_threshold must lie in"):
        AnswerReuse(iou_threshold=1.5)
    with pytest.raises(InvalidQueryError, match="max_age must be >= 0"):
        AnswerReuse(max_age=-1)
    with pytest.raises(InvalidQueryError, match=r"no description for region\(s\) \[2\]"):
        ReusePlan({}, [1, 2]).merge([1, 2], [RegionDescription(1, "", 0, "", (0, 0, 1, 1), 1)])
    assert mask_iou(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2), bool)).tolist() == [0.0]


def test_iou_and_a_new_frame_size():
    a, b = _frame({1: (0, 0), 2: (20, 30)}), _frame({1: (0, 1), 2: (25, 30)})
    assert mask_iou(a.masks, b.masks) == pytest.approx([90 / 110, 50 / 150])
    assert mask_iou(a.masks[:0], b.masks[:0]).shape == (0,)
    reuse = AnswerReuse(0.5, 0.5, 10)
    _step(reuse, a, "f0")
    wider = EncodedFrame(a.global_embeds, a.region_embeds, a.region_features, a.region_ids,
                         np.pad(a.masks, ((0, 0), (0, 0), (0, 4))), (40, 64))
    assert reuse.plan(wider).decode_ids == [1, 2]
    assert reuse.changed_since(reuse.snapshot(a), wider)


# ------------------------------------------------------------------- with the real model
def _lm_calls(predictor):
    calls = []
    return calls, predictor.model.language_model.register_forward_hook(
        lambda *_: calls.append(1))


def _scene():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    labels = np.zeros((40, 60), np.uint8)
    labels[2:14, 2:14] = 3
    labels[20:34, 30:46] = 5
    labels[26:36, 4:14] = 7
    return image, labels


def test_describe_many_skips_decoding_of_unchanged_regions(predictor):
    image, labels = _scene()
    reuse = AnswerReuse(0.8, 0.95, 5)
    options = {"tasks": ("classify", "caption"), "max_new_tokens": 5}
    frame = predictor.encode(image, labels)
    (first,) = predictor.describe_many([frame], reuse=[reuse], **options)
    assert first == predictor.describe(frame, **options) and len(reuse) == 3
    calls, hook = _lm_calls(predictor)
    try:
        (again,) = predictor.describe_many([predictor.encode(image, labels)], reuse=[reuse],
                                           **options)
        assert calls == []  # nothing decoded
        assert [(d.label, d.caption, d.reused, d.age) for d in again] == [
            (d.label, d.caption, True, 1) for d in first]
        moved = labels.copy()
        moved[moved == 5] = 0
        moved[20:34, 36:52] = 5  # 6 px to the right: IoU 0.45
        frame = predictor.encode(image, moved)
        (out,) = predictor.describe_many([frame], reuse=[reuse], **options)
        assert calls  # decoded again, for region 5 only
        assert [(d.region_id, d.reused, d.age) for d in out] == [(3, True, 2), (5, False, 0),
                                                                 (7, True, 2)]
        fresh = predictor.describe(frame, **options)[1]
        assert (out[1].label, out[1].caption, out[1].bbox) == (
            fresh.label, fresh.caption, fresh.bbox)
    finally:
        hook.remove()


def test_disabled_reuse_gives_exactly_todays_answers(predictor):
    options = {"tasks": ("classify", "caption"), "max_new_tokens": 4}
    off = [AnswerReuse(0.0, 0.9, 5), AnswerReuse(0.8, 0.9, 0)]
    for seq in moving_sequence(4, 60, 80, objects=3, seed=2):
        frame = predictor.encode(seq.image, seq.labels)
        today = predictor.describe(frame, **options)
        for reuse in off:
            (got,) = predictor.describe_many([frame], reuse=[reuse], **options)
            assert got == today and not any(d.reused for d in got)
