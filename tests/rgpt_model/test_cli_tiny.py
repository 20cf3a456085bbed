"""CLI, tiny model builder and demo path."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from rgpt_model import cli, demo
from rgpt_model.tiny import make_tiny_model


@pytest.fixture()
def files(tmp_path, scene):
    img, lab = scene
    Image.fromarray(img).save(tmp_path / "img.png")
    Image.fromarray(lab).save(tmp_path / "lab.png")
    return tmp_path


def test_cli_describe_and_refer(files, tiny_model_dir, capsys):
    rc = cli.main(["describe", str(files / "img.png"), "--masks", str(files / "lab.png"),
                   "--boxes", "40,0,10,10", "--model", str(tiny_model_dir),
                   "--max-new-tokens", "2"])  # fmt: skip
    assert rc == 0
    regions = json.loads(capsys.readouterr().out)["regions"]
    assert [r["region_id"] for r in regions] == [3, 5, 7, 8]
    assert regions[3]["bbox"] == [40, 0, 10, 10]
    rc = cli.main(["refer", str(files / "img.png"), "--masks", str(files / "lab.png"),
                   "--expression", "the mug", "--model", str(tiny_model_dir)])  # fmt: skip
    assert rc == 0
    assert set(json.loads(capsys.readouterr().out)) == {"matched_ids", "scores", "raw_answer"}


def test_cli_box_over_a_mask_keeps_both_whole(files, tiny_model_dir, capsys):
    """One overlap rule (a mask stack): a box over mask 3 takes none of its pixels and keeps
    its own."""
    rc = cli.main(["describe", str(files / "img.png"), "--masks", str(files / "lab.png"),
                   "--boxes", "0,0,20,20", "--tasks", "classify", "--model",
                   str(tiny_model_dir), "--max-new-tokens", "1"])  # fmt: skip
    assert rc == 0
    regions = {r["region_id"]: r for r in json.loads(capsys.readouterr().out)["regions"]}
    assert regions[3]["area"] == 100 and regions[8]["area"] == 400
    assert regions[8]["bbox"] == [0, 0, 20, 20]


def test_cli_help_names_the_models_vocabulary(capsys):
    with pytest.raises(SystemExit):
        cli.main(["describe", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "model's own label vocabulary" in text


def test_cli_errors(files, tiny_model_dir, capsys):
    rc = cli.main(["refer", str(files / "img.png"), "--masks", str(files / "lab.png"),
                   "--expression", "x", "--model", str(files / "missing")])  # fmt: skip
    assert rc == 2 and "ModelLoadError" in capsys.readouterr().err
    rc = cli.main(["describe", str(files / "nope.png"), "--masks", str(files / "lab.png")])
    assert rc == 2 and "InvalidImageError" in capsys.readouterr().err


def test_cli_help_documents_defaults(capsys):
    for sub in ("describe", "refer", "ask"):
        with pytest.raises(SystemExit):
            cli.main([sub, "--help"])
        out = capsys.readouterr().out
        for opt in ("--masks", "--boxes", "--model", "--device", "--dtype", "--max-new-tokens"):
            assert opt in out
        assert out.count("Default") >= 6


def test_make_tiny_model_fast_and_deterministic(tmp_path):
    t = time.perf_counter()
    a = make_tiny_model(tmp_path / "a", seed=3, vocabulary=["gizmo"])
    assert time.perf_counter() - t < 1.0
    b = make_tiny_model(tmp_path / "b", seed=3, vocabulary=["gizmo"])
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert "gizmo" in json.loads((a / "tokenizer.json").read_text())["model"]["vocab"]


def test_default_model_path_falls_back(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("RGPT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(demo, "DEMO_MODEL_DIR", tmp_path / "no_demo")
    path = demo.default_model_path()
    assert path == tmp_path / "tiny_model" and (path / "config.json").is_file()
    assert "RANDOM" in caplog.text
    assert np.isfinite(len(list(path.iterdir())))
