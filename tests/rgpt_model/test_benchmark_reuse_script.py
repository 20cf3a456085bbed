"""The reuse benchmark runs end to end on the tiny model and reports what issue 21 asks for."""

from __future__ import annotations

import json

import torch

from scripts.benchmark_reuse import main


def test_tiny_run_writes_the_report(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "reuse.json"
    try:
        rc = main(["--models", "tiny", "--frames", "6", "--height", "60", "--width", "80",
                   "--objects", "3", "--seeds", "0", "1", "--max-new-tokens", "4",
                   "--reuse", "0.5,0.5,10", "--batch-sizes", "1", "2", "--repeats", "1",
                   "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    tiny = json.loads(out.read_text())["models"]["tiny"]
    off, (on,) = tiny["reuse"]["without_reuse"], tiny["reuse"]["with_reuse"]
    assert off["decoded_tokens_per_frame"] > on["decoded_tokens_per_frame"] > 0
    assert on["decoded_tokens_ratio"] > 1 and 0 < on["reused_share"] < 1
    assert 0 <= on["agreement"]["label_and_caption"] <= 1
    assert 0 <= tiny["reuse"]["model_consistency"] <= 1
    assert 0 <= off["label_accuracy"] <= 1 and 0 <= on["label_accuracy"] <= 1
    assert json.loads(out.read_text())["sequence"]["seeds"] == [0, 1]
    assert set(tiny["batching"]) == {"1", "2"}
    assert all(b["same_answers"] and b["speedup"] > 0 for b in tiny["batching"].values())
