"""The demo bag's frames: deterministic synthetic scenes with their referring answers, then
segmented photographs."""

import numpy as np

from rgpt_model.data.demo_frames import PHOTOS, demo_frames
from rgpt_model.data.synthetic import SceneConfig, generate_scene


def test_frames_are_deterministic_scenes_then_photos():
    frames = demo_frames(scenes=2, photos=1, height=96, width=128)
    again = demo_frames(scenes=2, photos=1, height=96, width=128)
    assert [f.kind for f in frames] == ["synthetic", "synthetic", "photo"]
    for a, b in zip(frames, again, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    scene = generate_scene(0, 1, "val", SceneConfig(height=96, width=128))
    assert np.array_equal(frames[1].image, scene.image) and frames[1].source == "val/1"
    notes = frames[1].annotations()
    assert notes["regions"] == {str(r.id): r.name for r in scene.regions}
    assert [e["text"] for e in notes["expressions"]] == [e.text for e in scene.expressions]
    photo = frames[2]
    assert photo.source == PHOTOS[0] and "expressions" not in photo.annotations()
    ids = set(np.unique(photo.labels)) - {0}
    assert 1 <= len(ids) <= 5 and set(photo.regions) == {str(i) for i in ids}


def test_box_frames_give_each_object_its_bounding_box():
    """Scenes after the synthetic ones, each object's mask a rectangle: its bounding box where
    no smaller box lies on top."""
    (frame,) = demo_frames(scenes=2, photos=0, height=96, width=128, boxes=1)[2:]
    scene = generate_scene(0, 2, "val", SceneConfig(height=96, width=128))
    assert frame.kind == "boxes" and frame.source == "val/2 boxes"
    assert np.array_equal(frame.image, scene.image) and "expressions" not in frame.annotations()
    smallest = min(scene.regions, key=lambda r: r.bbox[2] * r.bbox[3])
    x, y, w, h = smallest.bbox
    assert np.all(frame.labels[y:y + h, x:x + w] == smallest.id)
    for r in scene.regions:
        ys, xs = np.nonzero(frame.labels == r.id)
        if len(ys):  # a region's visible pixels stay inside its box
            bx, by, bw, bh = r.bbox
            assert bx <= xs.min() and xs.max() < bx + bw and by <= ys.min() and ys.max() < by + bh
            assert frame.regions[str(r.id)] == r.name
    assert set(frame.regions) == {str(i) for i in np.unique(frame.labels) if i}
