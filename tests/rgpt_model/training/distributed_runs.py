"""Running the training command under torchrun from the tests (gloo on the CPU), and reading
back what a run wrote: the per-step losses of its log and the weights of its export."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from .conftest import tiny_run_dict

ROOT = Path(__file__).resolve().parents[3]


def write_config(tmp_path: Path, name: str, steps: int = 4, **extra) -> Path:
    """A tiny run's YAML config (``tiny_run_dict`` plus ``extra``) with output in
    ``tmp_path/name``; returns the config file."""
    d = tiny_run_dict(tmp_path, steps, **extra)
    d["output_dir"] = str(tmp_path / name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def free_port() -> int:
    """A TCP port nobody listens on now (the rendezvous of one torchrun)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(config: Path, *args: str, nproc: int = 2, timeout: float = 150,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node N ... -m rgpt_model.training.train``
    from the repository root; output captured (stdout and stderr together)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "-m", "rgpt_model.training.train", "--config", str(config), "--no-progress", *args]
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def check(result: subprocess.CompletedProcess) -> None:
    """Fail with the run's output when it did not succeed."""
    assert result.returncode == 0, result.stdout[-6000:]


def logged_losses(run_dir: Path) -> list[float]:
    """The loss of every step, as rank 0 logged it (``log_every: 1``)."""
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def exported_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """The tensors of an exported model directory."""
    return load_file(model_dir / "model.safetensors")


def max_weight_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference between two exports with the same tensors."""
    assert sorted(a) == sorted(b)
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
