"""encode_many / describe_many: one vision batch and one decoding batch for several frames,
with exactly the answers of frame-by-frame describe."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from rgpt_model.answer_reuse import AnswerReuse
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.errors import InvalidQueryError, QueryCancelledError
from rgpt_model.regions import describe_regions

TASKS = ("classify", "caption", "detailed_caption")


def _items():
    """Three different frames: 3+ regions, 2 selected regions (one later named), all regions."""
    scenes = [generate_scene(0, i, "test", SceneConfig(height=96, width=128, min_objects=3))
              for i in (500, 501, 503)]
    second = [r.id for r in scenes[1].regions][:2]
    items = [(s.image, s.labels, None) for s in scenes]
    items[1] = (scenes[1].image, scenes[1].labels, second)
    named = [None, {second[0]: "widget"}, None]
    return items, named


@contextlib.contextmanager
def _forward_calls(module):
    """Records the leading input shape of every forward call of a real module."""
    calls = []

    def hook(_mod, args, kwargs):
        x = kwargs.get("inputs_embeds", args[0] if args else None)
        calls.append(tuple(x.shape[:2]))

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def _key(d):
    return (d.region_id, d.label, d.caption, d.bbox, d.area, d.reused, d.age)


def _assert_same(many, reference):
    assert [[_key(d) for d in f] for f in many] == [[_key(d) for d in f] for f in reference]
    for got, ref in zip(many, reference, strict=True):
        assert [d.label_score for d in got] == pytest.approx(
            [d.label_score for d in ref], abs=1e-5)


@pytest.mark.parametrize("which", ["tiny", "demo"])
def test_describe_many_equals_frame_by_frame(which, request):
    pred = request.getfixturevalue("predictor" if which == "tiny" else "demo_predictor")
    items, named = _items()
    frames = pred.encode_many(items)
    assert [len(f) for f in frames] == [len(np.unique(items[0][1])) - 1, 2,
                                        len(np.unique(items[2][1])) - 1]
    many = pred.describe_many(frames, tasks=TASKS, named=named, max_new_tokens=12)
    singles = [pred.encode(*item) for item in items]
    reference = [describe_regions(pred, f, tasks=TASKS, known_labels=n, max_new_tokens=12)
                 for f, n in zip(singles, named, strict=True)]
    _assert_same(many, reference)
    assert (many[1][0].label, many[1][0].label_score) == ("widget", 1.0)
    # the frames answer differently, so a row served another frame's prefix would show
    assert len({tuple(d.caption for d in f) for f in many}) == 3
    # plain describe (no names) agrees too
    plain = pred.describe_many(frames, tasks=("caption",), max_new_tokens=6)
    _assert_same(plain, [pred.describe(f, tasks=("caption",), max_new_tokens=6)
                         for f in singles])


def test_encode_many_runs_the_region_encoder_once(predictor):
    items, _ = _items()
    with _forward_calls(predictor.model.region_encoder) as calls:
        frames = predictor.encode_many(items)
    assert calls == [(3, 3)]  # one call: 3 images, pixel tensors stacked
    for frame, item in zip(frames, items, strict=True):
        alone = predictor.encode(*item)
        assert frame.region_ids == alone.region_ids and frame.frame_size == alone.frame_size
        assert np.array_equal(frame.masks, alone.masks)
        torch.testing.assert_close(frame.region_features, alone.region_features,
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(frame.global_embeds, alone.global_embeds)
    assert predictor.encode_many([]) == []


def test_describe_many_decodes_as_one_batch(predictor):
    items, _ = _items()
    frames = predictor.encode_many(items)
    lm = predictor.model.language_model
    per_frame = []
    for frame in frames:
        with _forward_calls(lm) as calls:
            predictor.describe(frame, tasks=("classify", "caption"), max_new_tokens=6)
        per_frame.append(calls)
    with _forward_calls(lm) as calls:
        predictor.describe_many(frames, tasks=("classify", "caption"), max_new_tokens=6)
    rows = 2 * sum(len(f) for f in frames)
    # one prefix pass for all frames (batch 3), one suffix pass for every row, then steps
    assert calls[0][0] == 3 and calls[1][0] == rows
    assert len(calls) == max(len(c) for c in per_frame) <= 7
    assert sum(len(c) for c in per_frame) == 3 * len(calls)


def test_frames_without_regions_and_bad_arguments(predictor):
    items, _ = _items()
    empty = (items[0][0], np.zeros_like(items[0][1]), None)
    frames = predictor.encode_many([empty, items[2]])
    out = predictor.describe_many(frames, tasks=("classify",), max_new_tokens=3)
    assert out[0] == [] and len(out[1]) == len(frames[1])
    assert predictor.describe_many([], tasks=("classify",)) == []
    with pytest.raises(InvalidQueryError, match="1 entries for 2 frames"):
        predictor.describe_many(frames, tasks=("classify",), named=[{}])
    shared = AnswerReuse()
    with pytest.raises(InvalidQueryError, match="one AnswerReuse serves one stream"):
        predictor.describe_many(frames, tasks=("classify",), reuse=[shared, shared])
    with pytest.raises(InvalidQueryError, match="unknown task"):
        predictor.describe_many(frames, tasks=("dance",))
    with pytest.raises(TypeError, match=r"\(image, masks, region_ids\)"):
        predictor.encode_many([(items[0][0], items[0][1])])
    with pytest.raises(QueryCancelledError):
        predictor.describe_many(frames, tasks=("caption",), should_stop=lambda: True)
