"""Stages that switch on and train the mask position encoder of an already trained model."""

import pytest
import torch

from rgpt_model.training.config import config_from_dict
from rgpt_model.training.trainer import Trainer

from .conftest import tiny_run_dict


def test_position_stage_resumes_an_older_checkpoint_and_trains_only_from_its_stage(tmp_path):
    d = tiny_run_dict(tmp_path, steps=2)
    Trainer(config_from_dict(d), progress=False).train()  # a run from before the encoder
    d["model"]["mask_position"] = True
    d["stages"].append({"name": "position", "steps": 2, "lr": 0.01, "warmup_steps": 0,
                        "train": ["position", "connector", "lm"]})
    trainer = Trainer(config_from_dict(d), progress=False)
    assert trainer.load_checkpoint()  # its checkpoint has no mask_position weights
    assert torch.count_nonzero(trainer.model.mask_position.out.weight) == 0
    trainer.train(resume=True)
    assert trainer.step == 4
    assert torch.count_nonzero(trainer.model.mask_position.out.weight) > 0
    assert not trainer.model.vision_tower.embeddings.patch_embedding.weight.requires_grad


def test_mask_position_scale_reaches_the_model_and_must_be_positive(tmp_path):
    d = tiny_run_dict(tmp_path, steps=1)
    d["model"].update(mask_position=True, mask_position_scale=10.0)
    assert Trainer(config_from_dict(d), progress=False).model.mask_position.scale == 10.0
    d["model"]["mask_position_scale"] = 0.0
    with pytest.raises(ValueError, match="mask_position_scale must be > 0"):
        config_from_dict(d)


def test_training_position_without_the_encoder_is_an_error(tmp_path):
    d = tiny_run_dict(tmp_path, steps=1)
    d["stages"][0]["train"] = ["position", "lm"]
    with pytest.raises(ValueError, match="set model.mask_position: true"):
        config_from_dict(d)  # at load time, not hours later when the stage starts


def test_checkpoint_with_other_missing_weights_is_an_error(tmp_path):
    d = tiny_run_dict(tmp_path, steps=1)
    Trainer(config_from_dict(d), progress=False).train()
    d["model"]["mask_encoder"] = True
    with pytest.raises(RuntimeError, match="missing.*mask_encoder"):
        Trainer(config_from_dict(d), progress=False).load_checkpoint()
