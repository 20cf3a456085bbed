"""Resumable checkpoints of a training run, in ``<output_dir>/checkpoint-last``.

- ``strategy: single`` writes one ``state.pt`` (model, optimizer, position), as it always has.
- ``ddp`` / ``fsdp`` write a sharded checkpoint with ``torch.distributed.checkpoint`` (DCP):
  ``sharded/`` holds each rank's shards of the model (with the aux-loss heads) and optimizer
  state, taken through ``get_state_dict`` so the keys are plain parameter names whatever the
  wrapping; ``trainer_state.json`` the step, stage, LoRA flag and loss history;
  ``rng_state.pt`` the torch RNG. DCP reshards on load: a run may resume on another number of
  ranks (its data does not depend on it), or in one process for ``--export-only``.

A checkpoint is written to ``checkpoint-last.partial`` and renamed when every rank is done,
so an interrupted save leaves the previous checkpoint whole. On several nodes,
``output_dir`` must be a filesystem all nodes share.

A ``state.pt`` of the layout before the region encoder (issue 18; the issue-20 branch's runs
too: top-level ``vision_tower.*``, ``pixel_branch.*``, ...) resumes: its weights are renamed
and its optimizer state is reordered to the current parameter order
(:func:`legacy_optimizer_state`).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import FSDPModule

from rgpt_model.modeling import current_key
from rgpt_model.processor import RGPTProcessor
from rgpt_model.training.distributed import RunProcesses
from rgpt_model.training.legacy_config import OLD_CHECKPOINT_HEADS

logger = logging.getLogger(__name__)
CHECKPOINT_DIR = "checkpoint-last"
SINGLE_STATE = "state.pt"
SHARDED_DIR = "sharded"
TRAINER_STATE = "trainer_state.json"
RNG_STATE = "rng_state.pt"


def check_missing_weights(missing: list[str]) -> None:
    """A checkpoint may predate the mask position encoder (it then keeps its zero output);
    any other weight it lacks means it belongs to another model."""
    missing = [k for k in missing if "mask_position" not in k.split(".")]
    if missing:
        raise RuntimeError(f"checkpoint does not fit the model: missing {missing[:5]} "
                           f"({len(missing)} in all)")


# ------------------------------------------------------------------------- one process
def save_single(path: Path, state: dict, processor: RGPTProcessor) -> None:
    """``state`` (tensors and plain values) as ``path/state.pt``, written atomically."""
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (SINGLE_STATE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path / SINGLE_STATE)
    shutil.rmtree(path / SHARDED_DIR, ignore_errors=True)  # resumed from one: now stale
    processor.save_pretrained(path)


def load_single(path: Path, device: torch.device) -> dict:
    """The dict :func:`save_single` wrote."""
    return torch.load(path / SINGLE_STATE, map_location=device, weights_only=False)


def load_single_state(state: dict, model: nn.Module, aux_losses: Mapping[str, nn.Module],
                      optimizer: torch.optim.Optimizer | None) -> None:
    """Weights, aux-loss heads, optimizer and RNG of a ``state.pt`` (also one from before the
    aux-loss registry). Strict, except for :func:`check_missing_weights`."""
    weights = state["model"]
    legacy = any(current_key(k) != k for k in weights)
    if legacy:
        weights = {current_key(k): v for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    check_missing_weights(missing)
    if unexpected:
        raise RuntimeError(f"checkpoint does not fit the model: unexpected {unexpected[:5]}")
    saved = dict(state.get("aux_losses") or {})
    for old, name in OLD_CHECKPOINT_HEADS.items():
        if state.get(old) is not None:
            saved.setdefault(name, state[old])
    for name, aux in aux_losses.items():
        if name in saved:
            aux.load_state_dict(saved[name])
    if state["optimizer"] is not None and optimizer is not None:
        saved_optimizer = state["optimizer"]
        if legacy:
            saved_optimizer = legacy_optimizer_state(saved_optimizer, model, optimizer)
        optimizer.load_state_dict(saved_optimizer)
    torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it to the device


# modules of the model in the order the layout before the region encoder created them, which
# was the order of its parameters in the optimizer (the pixel branch: the issue-20 branch's)
LEGACY_PARAMETER_ORDER = ("vision_tower", "refiner", "mask_encoder", "connector",
                          "language_model", "mask_position", "pixel_branch")


def _legacy_rank(name: str | None) -> int:
    """Where parameter ``name`` of the current model came in the legacy order (aux-loss heads,
    which are not the model's, came after the model's parameters, as now)."""
    if name is None:
        return len(LEGACY_PARAMETER_ORDER)
    parts = name.split(".")
    top = parts[1] if parts[0] == "region_encoder" else parts[0]
    return LEGACY_PARAMETER_ORDER.index(top)


def legacy_optimizer_state(saved: dict, model: nn.Module,
                           optimizer: torch.optim.Optimizer) -> dict:
    """A legacy-layout optimizer state dict renumbered for ``optimizer`` (built for the same
    stage by the current code): the old layout listed e.g. the connector before the mask
    position encoder, the current one lists the region encoder's parts first. Within each
    parameter group, sorting the current parameters stably by their legacy module order gives
    the saved order."""
    names = {id(p): n for n, p in model.named_parameters()}
    current = optimizer.state_dict()
    if len(saved["param_groups"]) != len(current["param_groups"]):
        raise RuntimeError("checkpoint's optimizer does not fit this stage: "
                           f"{len(saved['param_groups'])} parameter groups, expected "
                           f"{len(current['param_groups'])}")
    state: dict[int, dict] = {}
    groups = []
    for old, new, live in zip(saved["param_groups"], current["param_groups"],
                              optimizer.param_groups, strict=True):
        params = live["params"]
        if len(old["params"]) != len(params):
            raise RuntimeError("checkpoint's optimizer does not fit this stage: a group of "
                               f"{len(old['params'])} parameters, expected {len(params)}")
        legacy = sorted(range(len(params)), key=lambda k: _legacy_rank(names.get(id(params[k]))))
        saved_index = {k: old["params"][pos] for pos, k in enumerate(legacy)}
        for k, p in enumerate(params):
            entry = saved["state"].get(saved_index[k])
            if entry is None:
                continue
            moment = entry.get("exp_avg")
            if moment is not None and moment.shape != p.shape:
                raise RuntimeError(f"checkpoint's optimizer state of {names.get(id(p))} has "
                                   f"shape {tuple(moment.shape)}, the parameter "
                                   f"{tuple(p.shape)}")
            state[new["params"][k]] = entry
        groups.append({**old, "params": new["params"]})
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------------------- sharded
def has_sharded(path: Path) -> bool:
    """Whether ``path`` holds a sharded (DCP) checkpoint."""
    return (path / SHARDED_DIR / ".metadata").is_file()


def save_sharded(path: Path, objective: nn.Module, optimizer: torch.optim.Optimizer | None,
                 trainer_state: dict, processor: RGPTProcessor, procs: RunProcesses) -> None:
    """Every rank writes its shards; rank 0 the small files; then ``path`` is replaced."""
    staging = path.with_name(path.name + ".partial")
    if procs.is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    procs.barrier()
    model_state, optim_state = get_state_dict(objective, optimizer or [])
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=staging / SHARDED_DIR)
    if procs.is_main:
        (staging / TRAINER_STATE).write_text(json.dumps(trainer_state) + "\n")
        torch.save(torch.get_rng_state(), staging / RNG_STATE)
        processor.save_pretrained(staging)
    procs.barrier()
    if procs.is_main:
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            path.rename(old)
        staging.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    procs.barrier()


def read_trainer_state(path: Path) -> dict:
    """Step, stage index, LoRA flag and history of a sharded checkpoint (enough to rebuild the
    optimizer and LoRA layers before the shards load)."""
    return json.loads((path / TRAINER_STATE).read_text())


def load_sharded(path: Path, objective: nn.Module,
                 optimizer: torch.optim.Optimizer | None) -> None:
    """Load the shards into ``objective`` and ``optimizer`` (as built for the saved stage) and
    restore the RNG; works for any number of ranks, and in one process."""
    model_state, optim_state = get_state_dict(objective, optimizer or [])
    saved = set(dcp.FileSystemReader(path / SHARDED_DIR).read_metadata().state_dict_metadata)
    check_missing_weights([k for k in model_state if f"model.{k}" not in saved])
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=path / SHARDED_DIR,
             planner=DefaultLoadPlanner(allow_partial_load=True))
    set_state_dict(objective, optimizer or [], model_state_dict=state["model"],
                   optim_state_dict=state["optim"])
    torch.set_rng_state(torch.load(path / RNG_STATE, weights_only=True))


def full_model_state(objective: nn.Module, procs: RunProcesses) -> dict[str, torch.Tensor]:
    """The RGPT model's whole state dict on rank 0, on the CPU (other ranks: empty). Under
    FSDP every rank must call it: the shards are gathered."""
    prefix = "model."
    if isinstance(objective, FSDPModule):
        full = get_model_state_dict(
            objective, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        full = objective.state_dict() if procs.is_main else {}
    return {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
