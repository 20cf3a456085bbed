"""The trainer's numbers stay put: a short seeded run gives the losses recorded before the
issue-18 restructure (region-attribute heads and grey repaints moved out of the trainer)."""

import pytest

from rgpt_model.training.config import config_from_dict
from rgpt_model.training.trainer import Trainer

from .conftest import tiny_run_dict

# (total, parts) of each step, recorded with the trainer of commit b419a75 (the part
# "region_attributes" was called "aux" there)
RECORDED = [
    (8.726860046386719, {"region_attributes": 8.726860046386719}),
    (7.431637763977051, {"region_attributes": 7.431637763977051}),
    (9.850382328033447, {"region_attributes": 4.017679214477539, "lm": 5.832703113555908}),
    (9.825810432434082, {"region_attributes": 4.361083984375, "lm": 5.464726448059082}),
    (9.257717609405518, {"region_attributes": 3.9225525856018066, "lm": 5.335165023803711}),
]


def test_vision_and_lm_stages_with_aux_heads_and_grey_repaints_keep_their_losses(tmp_path):
    d = tiny_run_dict(tmp_path, aux_losses={"region_attributes": 0.5})
    d["stages"] = [
        {"name": "vision", "steps": 2, "lr": 0.003, "warmup_steps": 1,
         "train": ["vision", "refiner"], "lm_loss": False,
         "augmentations": {"grey_repaint": 0.5}},
        {"name": "lm", "steps": 3, "lr": 0.003, "warmup_steps": 1,
         "augmentations": {"grey_repaint": 0.5},
         "task_weights": {"classify": 0.5, "brief_caption": 0.5}},
    ]
    trainer = Trainer(config_from_dict(d), progress=False)
    trainer.train()
    got = [(h["loss"], h["parts"]) for h in trainer.history]
    assert len(got) == len(RECORDED)
    for (loss, parts), (want_loss, want_parts) in zip(got, RECORDED, strict=True):
        assert list(parts) == list(want_parts)
        assert loss == pytest.approx(want_loss, rel=1e-5)
        assert list(parts.values()) == pytest.approx(list(want_parts.values()), rel=1e-5)
