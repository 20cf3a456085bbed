"""The REC attention and readout losses give the numbers recorded before they moved out of
the trainer into ``research``."""

import pytest

from rgpt_model.training.config import config_from_dict
from rgpt_model.training.trainer import Trainer
from tests.rgpt_model.training.conftest import tiny_run_dict

# (total, parts) of each step, recorded with the trainer of commit b419a75
RECORDED = [
    (13.64499020576477, {"lm": 5.805695533752441, "rec_attention": 4.890580177307129,
                         "rec_readout": 2.9487144947052}),
    (12.893303394317627, {"lm": 5.442586421966553, "rec_attention": 4.783180236816406,
                          "rec_readout": 2.667536735534668}),
    (12.626948952674866, {"lm": 5.199171543121338, "rec_attention": 4.761490345001221,
                          "expression_readout": 2.422849655151367,
                          "position_readout": 0.24343740940093994}),
    (11.592978432774544, {"lm": 4.946707248687744, "rec_attention": 4.402446746826172,
                          "expression_readout": 2.0718159675598145,
                          "position_readout": 0.1720084697008133}),
    (10.551060676574707, {"lm": 4.545303821563721, "rec_attention": 3.8840298652648926,
                          "expression_readout": 1.95412278175354,
                          "position_readout": 0.1676042079925537}),
]


def test_rec_supervision_and_readouts_keep_their_losses(tmp_path):
    d = tiny_run_dict(tmp_path)
    d["model"].update({"mask_position": True, "mask_position_scale": 10.0})
    d["stages"] = [
        {"name": "quote", "steps": 2, "lr": 0.003, "warmup_steps": 1,
         "task_weights": {"rec": 1.0}, "rec_attention_weight": 1.0, "rec_readout_weight": 0.5},
        {"name": "answer", "steps": 3, "lr": 0.003, "warmup_steps": 1,
         "train": ["vision", "refiner", "connector", "position", "lm"],
         "task_weights": {"rec": 0.7, "classify": 0.3}, "rec_attention_weight": 1.0,
         "rec_pointer_layout": "answer", "rec_expression_weight": 0.1,
         "rec_position_weight": 1.0},
    ]
    trainer = Trainer(config_from_dict(d), progress=False)
    trainer.train()
    got = [(h["loss"], h["parts"]) for h in trainer.history]
    assert len(got) == len(RECORDED)
    for (loss, parts), (want_loss, want_parts) in zip(got, RECORDED, strict=True):
        assert list(parts) == list(want_parts)
        assert loss == pytest.approx(want_loss, rel=1e-5)
        assert list(parts.values()) == pytest.approx(list(want_parts.values()), rel=1e-5)
