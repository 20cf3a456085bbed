"""The GPU benchmark script runs end to end on the CPU with --tiny and writes its JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark_gpu.py"


def _load():
    spec = importlib.util.spec_from_file_location("benchmark_gpu", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiny_cpu_run_writes_json(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "bench.json"
    try:
        rc = _load().main(["--tiny", "--device", "cpu", "--regions", "1", "3", "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["tiny"] and rep["device_type"] == "cpu"
    assert [r["regions"] for r in rep["results"]] == [1, 3]
    keys = {
        "encode_ms",
        "prefix_prefill_ms",
        "decode_step_ms",
        "captions_per_s",
        "shared_prefix_frame_s",
        "batched_generate_frame_s",
        "naive_frame_s",
        "decode_step_over_bandwidth_limit",
    }
    for r in rep["results"]:
        assert keys <= set(r) and all(r[k] >= 0 for k in keys)
        assert r["prefix_tokens"] > rep["model"]["global_tokens"]  # image + system prompt shared
    assert rep["bandwidth"]["limit_step_ms_measured"] > 0
    assert rep["model"]["llm_weight_GB"] > 0
    onnx = rep["onnx_encoder"]
    assert "error" not in onnx and onnx["providers"] == ["CPUExecutionProvider"]
    assert max(onnx["max_abs_diff_global_region"]) <= 1e-4
