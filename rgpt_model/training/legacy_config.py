"""Run configs and checkpoints written before aux losses and augmentations were looked up by
name still load.

Old keys and their new form: run ``aux_loss_weight: w`` -> ``aux_losses: {region_attributes:
w}``; stage ``grey_fraction: p`` -> ``augmentations: {grey_repaint: p}``; stage
``rec_attention_weight`` (with ``rec_pointer_layout``), ``rec_readout_weight``,
``rec_expression_weight`` and ``rec_position_weight`` -> ``aux_losses`` entries
``rec_attention_<layout>``, ``rec_number_readout``, ``rec_expression_readout`` and
``rec_position_readout`` in that order, after ``dense_region_attributes`` from the issue-20
branch's ``dense_aux_weight`` (the order in which the old trainer added them). Those
four are registered by the ``research`` plugin, which such a config must list.
"""

from __future__ import annotations

import copy
import logging

logger = logging.getLogger(__name__)

OLD_STAGE_LOSSES = {  # old stage key -> aux loss name, in the old trainer's order
    "dense_aux_weight": "dense_region_attributes",  # the issue-20 branch's
    "rec_attention_weight": "rec_attention_{layout}",
    "rec_readout_weight": "rec_number_readout",
    "rec_expression_weight": "rec_expression_readout",
    "rec_position_weight": "rec_position_readout",
}

# checkpoint keys of the training-only heads before the registry -> their aux loss names
OLD_CHECKPOINT_HEADS = {
    "aux_heads": "region_attributes",
    "expression_readout": "rec_expression_readout",
    "position_readout": "rec_position_readout",
}


def upgrade_legacy_keys(data: dict | None) -> dict | None:
    """A copy of the parsed YAML ``data`` with old keys in their new form (one warning)."""
    if not isinstance(data, dict):
        return data
    data = copy.deepcopy(data)
    found: list[str] = []
    weight = data.pop("aux_loss_weight", None)
    if weight is not None:
        found.append("aux_loss_weight")
        if weight > 0:
            data["aux_losses"] = {"region_attributes": weight, **(data.get("aux_losses") or {})}
    for stage in data.get("stages") or []:
        if isinstance(stage, dict):
            found += _upgrade_stage(stage)
    if found:
        logger.warning("deprecated run config keys %s: read as aux_losses / augmentations "
                       "(see rgpt_model/training/legacy_config.py); REC losses need "
                       "`plugins: [research]`", sorted(set(found)))
    return data


def _upgrade_stage(stage: dict) -> list[str]:
    """Rewrite one stage in place; returns the old keys it had."""
    found = [k for k in (*OLD_STAGE_LOSSES, "rec_pointer_layout", "grey_fraction")
             if k in stage]
    layout = stage.pop("rec_pointer_layout", "quote")
    losses = {}
    for key, name in OLD_STAGE_LOSSES.items():
        weight = stage.pop(key, 0.0)
        if weight > 0:
            losses[name.format(layout=layout)] = weight
    if losses:
        stage["aux_losses"] = {**losses, **(stage.get("aux_losses") or {})}
    grey = stage.pop("grey_fraction", 0.0)
    if grey > 0:
        stage["augmentations"] = {"grey_repaint": grey, **(stage.get("augmentations") or {})}
    return found
