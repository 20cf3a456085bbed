"""The one device/dtype resolver: names every entry point accepts, and the errors it gives."""

from __future__ import annotations

import pytest
import torch

from rgpt_model.device import device_name_problem, resolve_device, resolve_dtype
from rgpt_model.errors import ModelLoadError


@pytest.mark.parametrize("name,dtype", [
    (None, torch.float32), ("fp32", torch.float32), ("float16", torch.float16),
    ("half", torch.float16), ("bf16", torch.bfloat16), ("torch.bfloat16", torch.bfloat16),
    (" BFloat16 ", torch.bfloat16), (torch.float16, torch.float16)])
def test_dtype_names(name, dtype):
    assert resolve_dtype(name) is dtype


def test_an_unknown_dtype_names_the_choices():
    with pytest.raises(ModelLoadError, match="unknown dtype 'int8'.*float32, float16, bfloat16"):
        resolve_dtype("int8")


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:3", " CPU "])
def test_accepted_device_names(name):
    assert device_name_problem(name) == ""


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "mps", ""])
def test_rejected_device_names_say_what_to_use(name):
    assert "auto, cpu, cuda or cuda:N" in device_name_problem(name)
    with pytest.raises(ModelLoadError, match="unknown device"):
        resolve_device(name or "gpu")


def test_auto_and_cpu_resolve_on_this_host():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected == resolve_device(None).type


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_without_a_gpu_says_what_to_set():
    with pytest.raises(ModelLoadError, match="CUDA is not available here; set it to cpu or auto"):
        resolve_device("cuda:0")
