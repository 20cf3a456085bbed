"""The processes of a training run: torchrun's environment, the process group, and the few
collectives the trainer needs (sums over ranks that double as agreement on failure).

torchrun (``python -m torch.distributed.run``) starts one process per device and hands each its
RANK, LOCAL_RANK, WORLD_SIZE and rendezvous; this module only reads them. gloo on the CPU, NCCL
on CUDA. A ``ddp``/``fsdp`` run started without torchrun forms a one-process group itself, so
FSDP's sharded checkpoints and bf16 policy also serve a single GPU.

Why agreement: a rank that raises leaves the others waiting in their next collective. The
trainer therefore sums its per-step numbers (answer-token counts, loss parts) together with a
failure flag; when any rank failed, every rank raises :class:`DistributedTrainingError` naming
the rank and its error, and the job ends at once. A failure inside an FSDP collective cannot be
agreed on that way: that rank's process exits and torchrun stops the others
(``train.py``'s ``@record`` puts its traceback in torchrun's report).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from rgpt_model.device import resolve_device
from rgpt_model.errors import DistributedTrainingError
from rgpt_model.training.config import RUN_STRATEGIES

logger = logging.getLogger(__name__)


def torchrun_world_size() -> int:
    """Processes in the job as torchrun announced them (1 when not started by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class RunProcesses:
    """This process's place in the run, and the collectives over all of them."""

    strategy: str = "single"
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this object created the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, shows progress and writes shared files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether the ranks talk through a process group (strategy ddp or fsdp)."""
        return self.strategy != "single"

    def sum_or_fail(self, values: Sequence[float], error: BaseException | None = None,
                    where: str = "") -> list[float]:
        """``values`` summed over the ranks (float64); raises on every rank when any rank
        passes an ``error``. Without a process group: ``values`` back, or ``error`` raised."""
        if not self.distributed:
            if error is not None:
                raise error
            return [float(v) for v in values]
        device = self.device if self.device.type == "cuda" else torch.device("cpu")
        flat = torch.tensor([float(error is not None), *map(float, values)],
                            dtype=torch.float64, device=device)
        dist.all_reduce(flat)
        if flat[0] > 0:
            self._raise_together(error, where)
        return flat[1:].tolist()

    def _raise_together(self, error: BaseException | None, where: str) -> None:
        """Every rank learns which ranks failed and why, then raises the same error."""
        mine = None if error is None else f"{type(error).__name__}: {error}"
        messages: list[str | None] = [None] * self.world_size
        dist.all_gather_object(messages, mine)
        failed = "; ".join(f"rank {r}: {m}" for r, m in enumerate(messages) if m is not None)
        text = (f"distributed training stopped on rank {self.rank} of {self.world_size} "
                f"while {where}: {failed}")
        logger.error(text)
        raise DistributedTrainingError(text) from error

    def barrier(self) -> None:
        """Wait until every rank got here (no-op in a single process)."""
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group this object created."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False


def init_processes(strategy: str, device: str = "auto",
                   timeout_minutes: float = 30.0) -> RunProcesses:
    """Join (or, without torchrun, form) the process group that ``strategy`` needs.

    ``single`` needs none and refuses a multi-process launch: two copies training the same
    model alone would only overwrite each other's files. CUDA ranks take ``cuda:LOCAL_RANK``.
    """
    if strategy not in RUN_STRATEGIES:
        raise ValueError(f"strategy must be one of {RUN_STRATEGIES}, got {strategy!r}")
    world = torchrun_world_size()
    if strategy == "single":
        if world > 1:
            raise ValueError(f"torchrun started {world} processes but strategy is 'single': "
                             "set strategy ddp or fsdp (--set strategy=ddp), or launch one "
                             "process")
        return RunProcesses(device=resolve_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        timeout = timedelta(minutes=timeout_minutes)
        extra = {"device_id": resolved} if resolved.type == "cuda" else {}
        if "WORLD_SIZE" in os.environ:  # torchrun: its rendezvous gives address and ranks
            dist.init_process_group(backend, timeout=timeout, **extra)
        else:  # one process: an in-memory store, no port
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1,
                                    timeout=timeout, **extra)
        owns = True
    procs = RunProcesses(strategy=strategy, rank=dist.get_rank(),
                         world_size=dist.get_world_size(), local_rank=local_rank,
                         device=resolved, owns_group=owns)
    if procs.is_main:
        logger.info("%s over %d process(es), backend %s, device %s", strategy,
                    procs.world_size, dist.get_backend(), resolved)
    return procs
