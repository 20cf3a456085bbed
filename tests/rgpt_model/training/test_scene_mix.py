"""Training scenes from a weighted mixture of generator settings, masks from exact, box and
coarse variants (issue 20), and the config checks that guard them."""

import numpy as np
import pytest

from rgpt_model.data.mask_variants import COARSE_KINDS
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.data.synthetic_aux import grey_repaint, shape_only_view
from rgpt_model.training.config import config_from_dict
from rgpt_model.training.conversation_source import ConversationSource
from rgpt_model.training.scene_mix import scene_mixture

from .conftest import tiny_run_dict

WIDE = {"weight": 3.0, "height": 48, "width": 64, "max_rotation_deg": 30.0,
        "size_ranges": {"small": [0.12, 0.16], "medium": [0.21, 0.25], "large": [0.3, 0.36]},
        "backgrounds": ["texture"]}


def _source(tmp_path, **data) -> ConversationSource:
    d = tiny_run_dict(tmp_path)
    d["data"].update(data)
    return ConversationSource(config_from_dict(d))


def test_mixture_weights_and_fields(tmp_path):
    cfg = config_from_dict(tiny_run_dict(tmp_path, data={"image_height": 64, "image_width": 64,
                                                         "scenes": [{"weight": 1.0}, WIDE]}))
    configs, probs = scene_mixture(cfg.data)
    assert probs.tolist() == [0.25, 0.75]
    assert configs[0] == SceneConfig(height=64, width=64)
    assert (configs[1].height, configs[1].width, configs[1].max_rotation_deg) == (48, 64, 30.0)
    assert configs[1].size_ranges["small"] == (0.12, 0.16)
    assert configs[1].backgrounds == ("texture",)


@pytest.mark.parametrize("data, match", [
    ({"scenes": [{"weight": 1.0, "heigth": 64}]}, "heigth"),
    ({"scenes": [{"weight": -1.0}]}, "weights"),
    ({"mask_variants": {"exact": 1.0, "boxes": 1.0}}, "mask_variants"),
    ({"mask_variants": {"exact": 0.0}}, "mask_variants"),
])
def test_bad_mixture_settings_fail_at_load(tmp_path, data, match):
    d = tiny_run_dict(tmp_path)
    d["data"].update(data)
    with pytest.raises(ValueError, match=match):
        config_from_dict(d)


def test_bad_warm_start_fails_at_load(tmp_path):
    d = tiny_run_dict(tmp_path)
    d["model"]["warm_start"] = {"path": "", "parts": ["lm"]}
    with pytest.raises(ValueError, match="warm_start"):
        config_from_dict(d)
    d["model"]["warm_start"] = {"path": "x", "parts": ["mask_encoder"]}
    with pytest.raises(ValueError, match="warm_start"):
        config_from_dict(d)


def test_without_mixture_the_data_is_the_old_data(tmp_path):
    """No scenes and no variants: step s still shows train scenes first..first+n, exact masks."""
    source = _source(tmp_path)
    convs = source.batch(3, 0)
    first = 3 * 64
    for j, conv in enumerate(convs):
        scene = generate_scene(0, first + j, "train", SceneConfig(height=64, width=64))
        assert np.array_equal(conv.image, scene.image)
        assert np.array_equal(conv.masks, np.stack([scene.labels == r.id for r in scene.regions]))
        assert conv.mask_kind == "exact" and conv.object_masks is None


def test_mixture_and_variants_reach_the_batches(tmp_path):
    source = _source(tmp_path, scenes=[{"weight": 1.0}, WIDE],
                     mask_variants={"exact": 1.0, "box": 1.0, "coarse": 1.0})
    shapes, kinds = set(), set()
    for step in range(12):
        for conv in source.batch(step, 0):
            shapes.add(conv.image.shape[:2])
            kinds.add(conv.mask_kind)
            assert conv.masks.shape == conv.object_masks.shape
            assert all(m.any() for m in conv.masks)
    assert shapes == {(64, 64), (48, 64)}
    assert {"exact", "box"} <= kinds and kinds & set(COARSE_KINDS)
    again = _source(tmp_path, scenes=[{"weight": 1.0}, WIDE],
                    mask_variants={"exact": 1.0, "box": 1.0, "coarse": 1.0})
    assert all(np.array_equal(a.masks, b.masks)
               for a, b in zip(source.batch(5, 0), again.batch(5, 0), strict=True))
    # a rank's part is the same samples as in the whole micro-batch
    whole, part = source.batch(5, 0), source.batch(5, 0, part=slice(2, 4))
    assert all(np.array_equal(a.masks, b.masks) for a, b in zip(whole[2:4], part, strict=True))


def test_grey_repaint_follows_the_objects_not_their_boxes(tmp_path):
    source = _source(tmp_path, mask_variants={"box": 1.0})
    conv = source.batch(0, 0)[0]
    assert not np.array_equal(conv.masks, conv.object_masks)
    grey = shape_only_view(conv, np.random.default_rng(0))
    assert np.array_equal(grey.masks, conv.masks)  # the model still gets the boxes
    objects = grey_repaint(conv.image, conv.object_masks, np.random.default_rng(0))
    boxes = grey_repaint(conv.image, conv.masks, np.random.default_rng(0))
    assert np.array_equal(grey.image, objects) and not np.array_equal(grey.image, boxes)
