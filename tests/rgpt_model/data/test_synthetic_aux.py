"""Training aids of the synthetic world: grey repaints (shape without colour) and the
region-attribute heads, registered with the trainer by name."""

import numpy as np
import pytest
import torch

from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.data.synthetic_aux import RegionAttributeHeads, grey_repaint, shape_only_view
from rgpt_model.training.augment import registered_augmentations
from rgpt_model.training.aux_losses import AuxLossInputs, registered_aux_losses
from rgpt_model.training.plugins import load_plugins
from rgpt_model.training.samples import scene_conversation


def _scene():
    return generate_scene(0, 3, "train", SceneConfig(height=64, width=64))


def test_grey_repaint_removes_colour_keeps_outlines():
    scene = _scene()
    masks = np.stack([scene.labels == r.id for r in scene.regions])
    out = grey_repaint(scene.image, masks, np.random.default_rng(0), noise_std=0.0)
    assert out.shape == scene.image.shape and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    for m in masks:  # each object one flat grey level: its outline is what is left
        assert len(np.unique(out[m, 0])) == 1
    again = grey_repaint(scene.image, masks, np.random.default_rng(0), noise_std=0.0)
    assert np.array_equal(out, again)


def test_shape_only_view_drops_colour_labels_and_aux_loss_ignores_them():
    conv = scene_conversation(_scene(), np.random.default_rng(0), {"classify": 1.0}, 2)
    grey = shape_only_view(conv, np.random.default_rng(1))
    assert (grey.attributes[:, 1] == -1).all()
    assert (grey.attributes[:, [0, 2]] == conv.attributes[:, [0, 2]]).all()
    assert conv.attributes[:, 1].min() >= 0  # the original is untouched
    heads = RegionAttributeHeads(8)
    feats = torch.randn(len(grey.attributes), 8)
    loss = heads.loss(feats, torch.from_numpy(grey.attributes))
    assert torch.isfinite(loss)


def test_registered_by_name_as_a_builtin_plugin():
    load_plugins()
    assert "region_attributes" in registered_aux_losses()
    assert "grey_repaint" in registered_augmentations()


def test_attribute_heads_need_region_attributes_in_the_batch():
    heads = RegionAttributeHeads(8)
    with pytest.raises(ValueError, match="data.source: synthetic"):
        heads(AuxLossInputs({"input_ids": torch.zeros(1, 3)}, torch.randn(2, 8)))
