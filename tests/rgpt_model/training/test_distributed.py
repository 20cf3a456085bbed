"""torchrun with two processes on the CPU (gloo) trains what one process trains at the same
global batch, and one failing rank stops every rank with a clear error instead of a hang.

The runs: 4 steps, 4 images per micro-batch (2 per rank), 2 micro-batches per step, so each
step's global batch is 8 images whatever the number of processes.
"""

from __future__ import annotations

import time

import pytest
import torch

from rgpt_model.training.builder import build_model
from rgpt_model.training.config import config_from_dict, load_config
from rgpt_model.training.step_batches import StepBatches
from rgpt_model.training.trainer import Trainer

from . import distributed_runs as runs
from .conftest import tiny_run_dict
from .failing_plugin import FAILING_RANK_VARIABLE

RUN = {"grad_accum": 2}


def _samples(batch: dict[str, torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
    """(unpadded token ids, pixels) of each sample of a collated batch."""
    return [(ids[mask.bool()].tolist(), pix) for ids, mask, pix in
            zip(batch["input_ids"], batch["attention_mask"], batch["pixel_values"], strict=True)]


@pytest.mark.parametrize("augmentations", [{}, {"grey_repaint": 0.5}])
def test_the_ranks_slices_of_a_micro_batch_are_the_one_process_micro_batch(tmp_path,
                                                                           augmentations):
    """Sample k of (step, micro-batch) is the same image and conversation for any number of
    ranks, also when augmentations draw from the micro-batch's random stream."""
    cfg = config_from_dict(tiny_run_dict(tmp_path, images_per_step=6))
    cfg.stages[0].augmentations = augmentations
    cfg.data.task_weights = {"classify": 1.0}  # grey repaints apply to label conversations
    model, processor = build_model(cfg)
    ids = model.config.region_token_ids
    whole = _samples(StepBatches(cfg, processor, ids).make_batch(3, 1)[0])
    for world in (2, 3):
        parts = [_samples(StepBatches(cfg, processor, ids, rank, world).make_batch(3, 1)[0])
                 for rank in range(world)]
        joined = [sample for part in parts for sample in part]
        assert [t for t, _ in joined] == [t for t, _ in whole]
        assert all(torch.equal(a, b) for (_, a), (_, b) in zip(joined, whole, strict=True))
    with pytest.raises(ValueError, match="do not split evenly over 4 ranks"):
        StepBatches(cfg, processor, ids, 0, 4)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: the same config trained in this process (strategy single)."""
    tmp = tmp_path_factory.mktemp("single")
    trainer = Trainer(load_config(runs.write_config(tmp, "run", **RUN)), progress=False)
    trainer.train()
    trainer.export()
    return tmp / "run"


def test_ddp_on_two_processes_equals_one_process(one_process, tmp_path):
    runs.check(runs.torchrun(runs.write_config(tmp_path, "ddp", strategy="ddp", **RUN)))
    ddp, single = runs.logged_losses(tmp_path / "ddp"), runs.logged_losses(one_process)
    assert len(ddp) == len(single) == 4
    assert ddp == pytest.approx(single, abs=1e-5, rel=0)
    assert runs.max_weight_difference(runs.exported_weights(tmp_path / "ddp" / "final"),
                                      runs.exported_weights(one_process / "final")) < 1e-5
    assert (tmp_path / "ddp" / "checkpoint-last" / "sharded" / ".metadata").is_file()


def test_fsdp_on_two_processes_matches_one_process(one_process, tmp_path):
    """Tolerance 1e-5, as for DDP: FSDP gathers the full float32 weights for each layer, so
    each rank computes exactly what one process computes on its samples; only the order of
    float32 sums differs (gradients reduce-scattered, the clipping norm summed from shards),
    which moves results by about 1e-7 per step (measured: weights 7e-7 apart after 4 steps)."""
    runs.check(runs.torchrun(runs.write_config(tmp_path, "fsdp", strategy="fsdp", **RUN)))
    assert runs.logged_losses(tmp_path / "fsdp") == pytest.approx(
        runs.logged_losses(one_process), abs=1e-5, rel=0)
    assert runs.max_weight_difference(runs.exported_weights(tmp_path / "fsdp" / "final"),
                                      runs.exported_weights(one_process / "final")) < 1e-5


@pytest.mark.parametrize(("strategy", "where"), [("ddp", "data"), ("ddp", "forward"),
                                                 ("fsdp", "forward")])
def test_a_failing_rank_stops_every_rank_with_a_clear_error(tmp_path, strategy, where):
    """Rank 1 raises while preparing its data or in the forward pass of step 1. Under DDP
    both ranks agree on it and raise DistributedTrainingError naming rank 1 and its error; an
    FSDP rank fails inside its layer gathers, and torchrun stops the other rank and reports
    rank 1's traceback. Either way the job ends within seconds (the timeout catches a hang)."""
    stage = {"name": "s", "steps": 3, "lr": 0.003, "warmup_steps": 1}
    stage.update({"augmentations": {"fail_in_data": 1.0}} if where == "data"
                 else {"aux_losses": {"fail_in_forward": 1.0}})
    config = runs.write_config(tmp_path, "fails", strategy=strategy, stages=[stage],
                          plugins=["tests.rgpt_model.training.failing_plugin"])
    start = time.monotonic()
    result = runs.torchrun(config, timeout=120, env={FAILING_RANK_VARIABLE: "1"})
    took = time.monotonic() - start
    out = result.stdout
    assert result.returncode != 0, out[-4000:]
    assert f"injected {where} failure on rank 1" in out, out[-4000:]
    if strategy == "ddp":
        for rank in (0, 1):
            assert (f"[rank {rank}] rgpt_model.training.distributed: distributed training "
                    f"stopped on rank {rank} of 2 while") in out, out[-4000:]
        assert "rank 1: ValueError: injected" in out
        assert "DistributedTrainingError" in out
    else:
        assert "Root Cause" in out and "rank      : 1" in out, out[-4000:]
    assert not (tmp_path / "fails" / "final").exists()
    assert took < 100, took
