"""The training loss as one module: the model plus the training-only aux-loss heads.

One module, because DDP and FSDP wrap modules and must see every trainable parameter (the
heads' gradients are reduced and sharded like the model's) and because DDP needs the loss
computed inside its ``forward``.
"""

from __future__ import annotations

import torch
from torch import nn

from rgpt_model.modeling import RGPTForCausalLM
from rgpt_model.training.aux_losses import AuxLoss, AuxLossInputs
from rgpt_model.training.samples import IGNORE_INDEX


def answer_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Tokens the LM loss is averaged over: labelled positions after the one-token shift."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


class TrainingObjective(nn.Module):
    """``forward(batch, aux_weights, lm_loss, num_items)`` -> (total loss, weighted parts)."""

    def __init__(self, model: RGPTForCausalLM, aux_losses: dict[str, AuxLoss]) -> None:
        super().__init__()
        self.model = model
        self.aux_losses = nn.ModuleDict(aux_losses)

    def forward(self, batch: dict[str, torch.Tensor], aux_weights: dict[str, float],
                lm_loss: bool = True, num_items: float | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Answer-token LM loss plus the weighted aux losses (one vision pass), and each
        weighted part for the log: an aux loss that stops improving is invisible in the total.

        ``num_items``: divide the summed LM loss by this instead of averaging over the batch's
        own answer tokens (ranks of a distributed run pass the global count over the ranks).
        """
        m = self.model
        active = [(n, w, self.aux_losses[n]) for n, w in aux_weights.items()
                  if self.aux_losses[n].applies(batch)]
        want_map = any(aux.needs_refined_map for _, _, aux in active)
        g, r, *fmap = m.region_encoder(batch["pixel_values"], batch["masks"],
                                       batch["region_image_index"], return_refined_map=want_map)
        fmap = fmap[0] if fmap else None
        inputs = AuxLossInputs(batch, r, refined_map=fmap)
        parts = {n: w * aux(inputs) for n, w, aux in active if not aux.needs_lm}
        if lm_loss:
            after = [(n, w, aux) for n, w, aux in active if aux.needs_lm]
            embeds = m.merge_embeddings(batch["input_ids"], m.project(g), m.project(r),
                                        batch["region_feature_index"],
                                        batch["sample_image_index"])
            extra = {} if num_items is None else {"num_items_in_batch": num_items}
            out = m(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                    labels=batch["labels"], use_cache=False,
                    output_attentions=any(aux.needs_attentions for _, _, aux in after),
                    output_hidden_states=any(aux.needs_hidden_states for _, _, aux in after),
                    **extra)
            parts["lm"] = out.loss
            inputs = AuxLossInputs(batch, r, out, fmap)
            parts.update((n, w * aux(inputs)) for n, w, aux in after)
        total = sum(parts.values(), g.new_zeros((), dtype=torch.float32))
        return total, parts
