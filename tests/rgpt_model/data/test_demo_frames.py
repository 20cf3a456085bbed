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
