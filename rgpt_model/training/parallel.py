"""How the training objective is spread over the ranks: DDP (a replica per rank, gradients
all-reduced) or FSDP2 (``torch.distributed.fsdp.fully_shard``: parameters, gradients and
optimizer state sharded; each decoder and vision layer gathered only while it runs).

Both wrap the :class:`~rgpt_model.training.objective.TrainingObjective`, so the training-only
aux-loss heads are reduced and sharded like the model. Both average gradients over the ranks;
the trainer scales each rank's loss to make that average the loss of the global batch.
"""

from __future__ import annotations

import contextlib
import inspect
import logging

from torch import nn
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.nn.parallel import DistributedDataParallel

from rgpt_model.training.distributed import RunProcesses
from rgpt_model.training.precision import fsdp_mixed_precision

logger = logging.getLogger(__name__)


def shard_with_fsdp(objective: nn.Module, layer_classes: list[str], precision: str) -> None:
    """``fully_shard`` each layer whose class is named in ``layer_classes`` (the model's
    ``_no_split_modules``: LLaMA decoder and CLIP encoder layers), then the objective itself
    (embeddings, refiner, connector, heads: one group). In place; call it once, after any
    LoRA layers exist and before the optimizer is built."""
    policy = fsdp_mixed_precision(precision)
    layers = [m for m in objective.modules() if type(m).__name__ in set(layer_classes)]
    for layer in layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(objective, mp_policy=policy)
    logger.info("FSDP: %d layers sharded (%s), precision %s", len(layers),
                ", ".join(sorted({type(m).__name__ for m in layers})), precision)


def refresh_fsdp_after_freezing(objective: nn.Module) -> None:
    """Let FSDP re-read which parameters train after a stage changed ``requires_grad``.

    FSDP2 fixes each group's gradient dtypes at its first forward pass; a group that was
    frozen then (the LLM in stage 1) would reduce bf16 gradients into float32 parameters once
    unfrozen and fail (pytorch/pytorch#186998, fixed after torch 2.13). The fix re-runs the
    group's own dtype set-up; a torch without that method needs no fix.
    """
    for module in objective.modules():
        if not isinstance(module, FSDPModule):
            continue
        group = module._get_fsdp_state()._fsdp_param_group
        if group is not None and hasattr(group, "_init_mp_dtypes"):
            group._init_mp_dtypes()


def wrap_with_ddp(objective: nn.Module, procs: RunProcesses) -> DistributedDataParallel:
    """A DDP replica of ``objective`` over the trainable parameters it has now (re-wrap when
    a stage changes them). Unused parameters are expected: an aux loss that does not apply
    to a batch, CLIP's last norm when its pooled output is not used. Buffers are not synced
    in the forward pass: that would be a collective a failed forward could not be agreed on
    after (and the model's buffers are constants)."""
    cuda = procs.device.type == "cuda"
    # torch 2.13 renamed broadcast_buffers (and warns about the old name)
    no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in
               inspect.signature(DistributedDataParallel).parameters else "broadcast_buffers")
    return DistributedDataParallel(
        objective, device_ids=[procs.device.index] if cuda else None,
        find_unused_parameters=True, **{no_sync: False})


def gradient_sync(wrapped: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` for the micro-batches before the last of a step (gradients add up
    locally and are all-reduced once). FSDP reduces every micro-batch: keeping unsharded
    gradients across micro-batches would give back the memory that sharding saves."""
    if sync or not isinstance(wrapped, DistributedDataParallel):
        return contextlib.nullcontext()
    return wrapped.no_sync()
