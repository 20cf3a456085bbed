"""Sharded (torch.distributed.checkpoint) checkpoints of a two-process FSDP run: resuming
equals the uninterrupted run, on two processes and in one, and the export after the run is an
ordinary model directory that the predictor loads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rgpt_model.build import load_predictor
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.training.checkpointing import TRAINER_STATE, has_sharded
from rgpt_model.training.config import load_config
from rgpt_model.training.trainer import Trainer

from . import distributed_runs as runs


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Four FSDP steps on two processes without a break."""
    tmp = tmp_path_factory.mktemp("fsdp")
    runs.check(runs.torchrun(runs.write_config(tmp, "run", strategy="fsdp")))
    return tmp / "run"


def test_resume_from_a_sharded_checkpoint_equals_the_uninterrupted_run(uninterrupted,
                                                                       tmp_path):
    config = runs.write_config(tmp_path, "resumed", strategy="fsdp")
    runs.check(runs.torchrun(config, "--stop-after", "2"))
    saved = tmp_path / "resumed" / "checkpoint-last"
    assert has_sharded(saved)
    assert json.loads((saved / TRAINER_STATE).read_text())["step"] == 2
    shutil.copytree(saved, tmp_path / "in_one" / "checkpoint-last")  # for the one-process run
    runs.check(runs.torchrun(config, "--resume"))
    # exact: the same float32 state, the same data, the same operations
    assert runs.logged_losses(tmp_path / "resumed") == runs.logged_losses(uninterrupted)
    assert runs.max_weight_difference(runs.exported_weights(tmp_path / "resumed" / "final"),
                                      runs.exported_weights(uninterrupted / "final")) == 0.0

    # the shards of two ranks resume in one process (DCP reshards on load); equal up to the
    # order of float32 sums, as one process and two processes are (test_distributed.py)
    cfg = load_config(config, ["strategy=single", f"output_dir={tmp_path / 'in_one'}"])
    trainer = Trainer(cfg, progress=False)
    trainer.train(resume=True)
    assert [h["loss"] for h in trainer.history] == pytest.approx(
        runs.logged_losses(uninterrupted), abs=1e-5, rel=0)
    assert runs.max_weight_difference(runs.exported_weights(trainer.export()),
                                      runs.exported_weights(uninterrupted / "final")) < 1e-5


def test_the_export_of_a_distributed_run_loads_and_answers(uninterrupted):
    predictor = load_predictor(uninterrupted / "final", device="cpu")
    scene = generate_scene(0, 3, "val", SceneConfig(height=64, width=64, min_objects=2,
                                                     max_objects=3))
    masks = np.stack([scene.labels == r.id for r in scene.regions])
    described = predictor.describe(scene.image, masks, tasks=("classify", "caption"),
                                   max_new_tokens=6)
    assert [d.region_id for d in described] == list(range(1, len(scene.regions) + 1))
    vocabulary = set(predictor.model.config.label_vocabulary)
    assert all(d.label in vocabulary for d in described)
    assert all(isinstance(d.caption, str) for d in described)
    answer = predictor.ask(scene.image, masks, "What color is <region1>?", max_new_tokens=4)
    assert isinstance(answer, str) and answer.strip()
