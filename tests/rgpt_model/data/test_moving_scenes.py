"""The moving-objects video: deterministic, 1-2 px of motion per frame, objects come and go."""

from __future__ import annotations

import numpy as np

from rgpt_model.data.moving_scenes import moving_objects, moving_sequence


def test_same_arguments_same_frames():
    a = list(moving_sequence(6, 60, 80, objects=3, seed=4))
    b = list(moving_sequence(6, 60, 80, objects=3, seed=4))
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.labels, y.labels)
               for x, y in zip(a, b, strict=True))
    other = next(moving_sequence(6, 60, 80, objects=3, seed=5))
    assert not np.array_equal(a[0].image, other.image)


def test_objects_drift_one_to_two_pixels_and_come_and_go():
    frames = list(moving_sequence(40, 120, 160, objects=6, seed=0))
    objs = moving_objects(40, 120, 160, objects=6, seed=0)
    speeds = [np.hypot(o.vx, o.vy) for o in objs]
    assert all(1.0 <= s <= 2.0 for s in speeds)
    first_ids = set(frames[0].names)
    assert any(o.first > 0 for o in objs) and any(o.last < 39 for o in objs)
    seen = [set(f.names) for f in frames]
    assert any(ids - first_ids for ids in seen)  # someone appeared
    assert any(first_ids - ids for ids in seen)  # someone left
    # a visible object's centroid moves by about its speed per frame (occlusion aside)
    shifts = []
    for o in objs:
        cents = [np.argwhere(f.labels == o.id).mean(axis=0) for f in frames
                 if o.id in f.names]
        shifts += [float(np.hypot(*(b - a))) for a, b in zip(cents, cents[1:], strict=False)]
    assert 1.0 <= float(np.median(shifts)) <= 2.2
    assert all(set(f.names) == set(np.unique(f.labels).tolist()) - {0} for f in frames)
