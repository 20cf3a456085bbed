"""The committed demo recipe runs as committed: its CLI imports the ``research`` plugin named
in the config and every stage trains one step (tiny model, two scenes a step)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rgpt_model.training.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "rgpt_model" / "configs" / "demo.yaml"
TINY = ["model.vision.hidden_size=32", "model.vision.intermediate_size=64",
        "model.vision.num_hidden_layers=1", "model.vision.image_size=64",
        "model.vision.patch_size=8", "model.text.hidden_size=64",
        "model.text.intermediate_size=128", "model.text.num_hidden_layers=2",
        "model.text.num_attention_heads=2", "model.text.num_key_value_heads=2",
        "model.refiner_hidden_size=16", "data.image_height=64", "data.image_width=64",
        "data_workers=0", "save_every=0", "log_every=1"]


def _one_step_per_stage(config: Path, run: Path, extra: list[str]) -> list[dict]:
    """Train every stage of ``config`` for one step on the tiny model through the CLI; the
    train log's records, one per stage."""
    stages = load_config(config).stages
    overrides = TINY + extra + [f"stages.{i}.{key}" for i in range(len(stages))
                                for key in ("steps=1", "images_per_step=2", "warmup_steps=1")]
    args = [sys.executable, "-m", "rgpt_model.training.train", "--config", str(config),
            "--output-dir", str(run), "--no-progress", "--log-level", "WARNING"]
    for item in overrides:
        args += ["--set", item]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    log = [json.loads(line) for line in (run / "train_log.jsonl").open()]
    assert len(log) == len(stages)
    return log


def test_every_demo_stage_trains_a_step_through_the_cli(tmp_path):
    log = _one_step_per_stage(DEMO, tmp_path / "run", [])
    parts = [set(rec["parts"]) for rec in log]
    assert parts[0] == {"region_attributes"}  # stage 0: vision only
    assert {"lm", "region_attributes", "rec_position_readout"} <= parts[13]  # stage 14
    assert {"rec_attention_quote", "rec_attention_answer",
            "rec_expression_readout"} <= set().union(*parts)  # where a step had REC rows
    assert (tmp_path / "run" / "final" / "config.json").is_file()


def test_every_demo_v2_stage_trains_a_step_through_the_cli(tmp_path):
    """The issue-20 recipe (demo_v2.yaml) on a tiny model: no warm start (the demo model's
    sizes), patch merge 4 on the 8x8 grid; mixed scenes, box/coarse masks, dense loss."""
    log = _one_step_per_stage(ROOT / "rgpt_model" / "configs" / "demo_v2.yaml",
                              tmp_path / "run",
                              ["model.warm_start=null", "model.patch_merge_factor=4"])
    assert set(log[0]["parts"]) == {"region_attributes", "dense_region_attributes"}
    assert all({"lm", "dense_region_attributes"} <= set(rec["parts"]) for rec in log[1:])
    final = tmp_path / "run" / "final"
    saved = json.loads((final / "config.json").read_text())
    assert saved["use_pixel_branch"] and not saved["mask_position_spread"]
    assert not saved["use_mask_encoder"]
    assert not json.loads((final / "rgpt_processor_config.json").read_text())["pad_to_square"]
