"""scripts/benchmark_training.py: its help, the RGPT-7B geometry it builds for the GPU, and both
of its modes end to end on the CPU with the tiny geometry."""

from __future__ import annotations

import json

import pytest
import torch

from scripts import benchmark_training


@pytest.fixture
def bench():
    threads = torch.get_num_threads()
    yield benchmark_training
    torch.set_num_threads(threads)  # a run sets its own thread count


def test_help_explains_every_option_with_its_default(bench, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for option in ("--device", "--geometry", "--stage", "--steps", "--warmup-steps",
                   "--images-per-step", "--grad-accum", "--processes", "--threads",
                   "--strategy", "--precision", "--json", "--single-run", "--dry-run"):
        assert option in text
    assert text.count("(default:") >= 12
    assert "--worker" not in text  # internal


def test_the_gpu_mode_builds_the_rgpt7b_geometry_with_fsdp_bf16_and_checkpointing(bench, capsys):
    assert bench.main(["--device", "cuda", "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["geometry"] == "rgpt7b" and report["stage"] == "stage2-lora"
    assert 7.0e9 < report["parameters"] < 7.1e9  # CLIP ViT-L/14 (0.30 B) + LLaMA-7B (6.74 B)
    assert report["lm_parameters"] == 6_738_415_616  # Vicuna-7B / Llama-2-7B exactly
    assert report["decoder_layers"] == 32 and report["global_tokens"] == 144
    cfg = report["train_config"]
    assert (cfg["strategy"], cfg["precision"], cfg["gradient_checkpointing"]) == (
        "fsdp", "bf16", True)
    assert cfg["data"]["image_height"] == 336 and cfg["stages"][0]["lm_mode"] == "lora"


def test_the_gpu_mode_runs_on_the_cpu_with_the_tiny_geometry(bench, tmp_path):
    out = tmp_path / "gpu_mode.json"
    assert bench.main(["--single-run", "--geometry", "tiny", "--precision", "bf16",
                       "--steps", "2", "--json", str(out)]) == 0
    run = json.loads(out.read_text())["run"]
    assert (run["strategy"], run["precision"], run["gradient_checkpointing"]) == (
        "fsdp", "bf16", True)
    assert run["processes"] == 1 and run["measured_steps"] == 2
    assert run["tokens_per_s"] > run["samples_per_s"] > 0
    assert run["peak_rss_mb"] >= run["rss_at_start_mb"] > 0


def test_the_cpu_mode_compares_runs_in_child_processes(bench, tmp_path):
    out = tmp_path / "cpu.json"
    assert bench.main(["--geometry", "tiny", "--processes", "1", "--steps", "1",
                       "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    plain, checkpointed = report["checkpointing"]
    assert not plain["gradient_checkpointing"] and checkpointed["gradient_checkpointing"]
    assert report["samples_per_s_ratio"] == {"1": 1.0}
    assert report["peak_rss_ratio_with_checkpointing"] == pytest.approx(
        checkpointed["peak_rss_mb"] / plain["peak_rss_mb"])
    assert plain["final_loss"] == pytest.approx(checkpointed["final_loss"], abs=1e-6)
