"""The REC attention and readout losses give the numbers recorded before they moved out of
the trainer into ``research``."""

import pytest

from rgpt_model.training.config import config_from_dict
from rgpt_model.training.trainer import Trainer
from tests.rgpt_model.training.conftest import tiny_run_dict

# (total, parts) of each step, recorded with the trainer of commit aee9a4b (old part names:
# rec_attention, rec_readout, expression_readout, position_readout). No mask position encoder:
# the order in which the model creates its parts sets the random start of such a model.
RECORDED = [
    (13.64507269859314, {"lm": 5.81291389465332, "rec_attention_quote": 4.8897881507873535,
                         "rec_number_readout": 2.942370653152466}),
    (12.908973932266235, {"lm": 5.4510273933410645, "rec_attention_quote": 4.786640644073486,
                          "rec_number_readout": 2.6713058948516846}),
    (12.640413165092468, {"lm": 5.210400581359863, "rec_attention_answer": 4.763535976409912,
                          "rec_expression_readout": 2.423039197921753,
                          "rec_position_readout": 0.24343740940093994}),
    (11.543114319443703, {"lm": 4.867812633514404, "rec_attention_answer": 4.4312310218811035,
                          "rec_expression_readout": 2.072063446044922,
                          "rec_position_readout": 0.172007218003273}),
    (10.43957881629467, {"lm": 4.47458553314209, "rec_attention_answer": 3.843385696411133,
                         "rec_expression_readout": 1.9540022611618042,
                         "rec_position_readout": 0.16760532557964325}),
]


def test_rec_supervision_and_readouts_keep_their_losses(tmp_path):
    d = tiny_run_dict(tmp_path, plugins=["research"])
    d["stages"] = [
        {"name": "quote", "steps": 2, "lr": 0.003, "warmup_steps": 1,
         "task_weights": {"rec": 1.0},
         "aux_losses": {"rec_attention_quote": 1.0, "rec_number_readout": 0.5}},
        {"name": "answer", "steps": 3, "lr": 0.003, "warmup_steps": 1,
         "task_weights": {"rec": 0.7, "classify": 0.3},
         "aux_losses": {"rec_attention_answer": 1.0, "rec_expression_readout": 0.1,
                        "rec_position_readout": 1.0}},
    ]
    trainer = Trainer(config_from_dict(d), progress=False)
    trainer.train()
    got = [(h["loss"], h["parts"]) for h in trainer.history]
    assert len(got) == len(RECORDED)
    for (loss, parts), (want_loss, want_parts) in zip(got, RECORDED, strict=True):
        assert list(parts) == list(want_parts)
        assert loss == pytest.approx(want_loss, rel=1e-5)
        assert list(parts.values()) == pytest.approx(list(want_parts.values()), rel=1e-5)
