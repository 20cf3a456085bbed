"""Aux loss dense_region_attributes (issue 20): per-cell targets of the object covering each
cell, the loss itself, and a trainer stage that uses it through the aux-loss registry."""

import numpy as np
import pytest
import torch

from rgpt_model.data.synthetic_aux import RegionAttributeHeads
from rgpt_model.data.synthetic_dense_aux import (
    IGNORE,
    batch_cell_targets,
    cell_targets,
    dense_aux_loss,
)
from rgpt_model.training.config import config_from_dict
from rgpt_model.training.trainer import Trainer

from .conftest import tiny_run_dict


def test_cell_targets_name_the_covering_object():
    masks = torch.zeros(2, 8, 8)
    masks[0, :4, :4] = 1  # object 0 fills the top-left quarter
    masks[1, 4:, 4:] = 1
    masks[1, 4:5, 4:8] = 0.4  # a row object 1 covers too thinly at this grid
    attrs = np.asarray([[3, 5, 2, 0.2, 0.2], [6, -1, 0, 0.7, 0.7]], dtype=np.float32)
    t = cell_targets(masks, attrs, 4)
    assert t.shape == (3, 4, 4)
    assert (t[:, :2, :2] == torch.tensor([3, 5, 2])[:, None, None]).all()
    assert (t[0, 3, 3] == 6) and (t[1, 3, 3] == IGNORE)  # a grey repaint has no colour
    assert (t[:, :2, 2:] == IGNORE).all() and (t[:, 2:, :2] == IGNORE).all()  # background
    assert cell_targets(torch.zeros(0, 8, 8), np.zeros((0, 5)), 4).eq(IGNORE).all()
    assert torch.equal(cell_targets(masks, torch.from_numpy(attrs), 4), t)


def test_batch_targets_follow_each_image_and_prefer_the_object_masks():
    masks = torch.zeros(3, 8, 8)
    masks[0, :4, :4] = 1
    masks[1, 4:, 4:] = 1
    masks[2, :, :] = 1  # image 1: one object everywhere
    attrs = torch.tensor([[1, 1, 1, 0, 0], [2, 2, 2, 0, 0], [3, 3, 0, 0, 0]], dtype=torch.float)
    batch = {"pixel_values": torch.zeros(2, 3, 8, 8), "masks": masks,
             "region_attributes": attrs, "region_image_index": torch.tensor([0, 0, 1])}
    t = batch_cell_targets(batch, 4)
    assert t.shape == (2, 3, 4, 4)
    assert torch.equal(t[0], cell_targets(masks[:2], attrs[:2], 4))
    assert (t[1, 0] == 3).all()
    boxes = torch.ones_like(masks)  # the model's masks: boxes; the objects: the exact ones
    assert torch.equal(batch_cell_targets({**batch, "masks": boxes, "object_masks": masks}, 4), t)


def test_dense_loss_trains_the_map_toward_its_targets():
    torch.manual_seed(0)
    heads = RegionAttributeHeads(16)
    fmap = torch.randn(1, 16, 4, 4, requires_grad=True)
    targets = torch.full((1, 3, 4, 4), IGNORE)
    targets[0, :, :2, :2] = torch.tensor([1, 2, 0])[:, None, None]
    opt = torch.optim.Adam([fmap, *heads.parameters()], lr=0.05)
    first = float(dense_aux_loss(heads, fmap, targets).detach())
    for _ in range(50):
        loss = dense_aux_loss(heads, fmap, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.1 * first


def _dense_run(tmp_path, **extra):
    d = tiny_run_dict(tmp_path, steps=2, aux_losses={"region_attributes": 0.2})
    d["stages"][0].update({"lm_loss": False, "train": ["vision", "refiner"],
                           "aux_losses": {"dense_region_attributes": 1.0}})
    d["data"]["mask_variants"] = {"box": 1.0}
    d["model"]["pixel_branch"] = True  # its map is part of the refined map the cells read
    d.update(extra)
    return d


def test_a_dense_stage_logs_its_part_and_shares_the_heads(tmp_path):
    trainer = Trainer(config_from_dict(_dense_run(tmp_path)), progress=False)
    batch, _ = trainer.make_batch(0, 0)
    assert batch["object_masks"].shape == batch["masks"].shape
    assert not torch.equal(batch["object_masks"], batch["masks"])  # boxes vs objects
    dense = trainer.aux_losses["dense_region_attributes"]
    assert dense.heads is trainer.aux_losses["region_attributes"]
    assert list(dense.parameters()) == []  # the heads train and are saved once
    before = trainer.model.pixel_branch.out.weight.clone()
    trainer.train()
    assert all(h["parts"]["dense_region_attributes"] > 0 for h in trainer.history)
    assert not torch.equal(trainer.model.pixel_branch.out.weight, before)  # it trains


def test_the_dense_loss_needs_the_attribute_heads_in_its_stage(tmp_path):
    d = _dense_run(tmp_path, aux_losses={})
    with pytest.raises(ValueError, match="region_attributes"):
        config_from_dict(d)


def test_the_issue20_keys_still_read(tmp_path):
    """The issue-20 branch's run config (aux_loss_weight, dense_aux_weight, grey_fraction)."""
    d = _dense_run(tmp_path, aux_losses={})
    d["aux_loss_weight"] = 0.2
    stage = d["stages"][0]
    del stage["aux_losses"]
    stage.update({"dense_aux_weight": 0.5, "grey_fraction": 0.3})
    cfg = config_from_dict(d)
    assert cfg.aux_losses == {"region_attributes": 0.2}
    assert cfg.stages[0].aux_losses == {"dense_region_attributes": 0.5}
    assert cfg.stages[0].augmentations == {"grey_repaint": 0.3}
