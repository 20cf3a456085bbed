"""Start a new model from parts of a saved one (config ``model.warm_start``).

The shipped demo model's language model took most of its ~14 h of training to learn the
task language and the REC answer pointer; a model that changes its region inputs (issue 20:
no mask silhouette encoder, a larger input) can keep that LM and retrain the vision side.
Only named parts are copied, each tensor must exist with the same shape, except the vision
tower's position table, which is resized (bicubic, as CLIP's own interpolation) to a larger
input grid. A sha256 of the weights file pins the start, so a recipe cannot silently start
from a different file. The saved model may be in the layout before the region encoder (the
demo model's file, top-level ``vision_tower.*``): its keys are read in the current one.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from rgpt_model.errors import ModelLoadError
from rgpt_model.modeling import current_key

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
PART_PREFIXES = {"vision": "region_encoder.vision_tower.", "refiner": "region_encoder.refiner.",
                 "position": "region_encoder.mask_position.", "connector": "connector.",
                 "lm": "language_model."}
_POSITION_TABLE = "embeddings.position_embedding.weight"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file (read in 1 MB blocks)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_path(directory: str | Path, sha256: str | None) -> Path:
    """The directory's weights file, checked against ``sha256`` when one is given."""
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelLoadError(f"warm start: {path} does not exist; model.warm_start.path must "
                             "name a model directory kept in the repository")
    if sha256 is not None:
        found = file_sha256(path)
        if found != sha256:
            raise ModelLoadError(
                f"warm start: {path} has sha256 {found}, the config pins {sha256}; restore the "
                "file the recipe was made from (git history) or retrain and update the pin")
    return path


def resize_position_table(table: torch.Tensor, grid: int) -> torch.Tensor:
    """(1 + g*g, C) CLIP position table (class row first) -> (1 + grid*grid, C)."""
    old = math.isqrt(table.shape[0] - 1)
    if old * old != table.shape[0] - 1:
        raise ModelLoadError(f"position table of {table.shape[0]} rows is not 1 + a square")
    patch = table[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    patch = F.interpolate(patch, size=(grid, grid), mode="bicubic", align_corners=False)
    patch = patch.permute(0, 2, 3, 1).reshape(grid * grid, -1).to(table.dtype)
    return torch.cat([table[:1], patch])


@torch.no_grad()
def load_parts(model: torch.nn.Module, directory: str | Path, parts: list[str],
               sha256: str | None = None) -> dict[str, int]:
    """Copy ``parts`` of the model saved in ``directory`` into ``model``; returns the number of
    tensors copied per part. Raises ModelLoadError when a part does not fit."""
    source = {current_key(k): v for k, v in
              load_file(str(weights_path(directory, sha256))).items()}
    target = model.state_dict()
    copied: dict[str, int] = {}
    update: dict[str, torch.Tensor] = {}
    for part in parts:
        prefix = PART_PREFIXES[part]
        keys = [k for k in target if k.startswith(prefix)]
        if not keys:
            raise ModelLoadError(f"warm start: the new model has no {part} ({prefix}*)")
        for key in keys:
            if key not in source:
                raise ModelLoadError(f"warm start: {directory} has no {key} for part {part}")
            value = source[key]
            if value.shape != target[key].shape and key.endswith(_POSITION_TABLE):
                value = resize_position_table(value, math.isqrt(target[key].shape[0] - 1))
            if value.shape != target[key].shape:
                raise ModelLoadError(f"warm start: {key} is {tuple(value.shape)} in {directory}, "
                                     f"{tuple(target[key].shape)} in the new model")
            update[key] = value.to(target[key].dtype)
        copied[part] = len(keys)
    model.load_state_dict(update, strict=False)
    logger.info("warm start from %s: %s", directory, copied)
    return copied
