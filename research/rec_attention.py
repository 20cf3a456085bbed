"""Attention supervision and readouts for REC answers, as aux losses of the trainer
(training only; the exported model is unchanged).

Registered names (``aux_losses`` of a run config that lists ``plugins: [research]``):
``rec_attention_quote`` / ``rec_attention_answer`` (the two layouts below),
``rec_number_readout``, ``rec_expression_readout`` and ``rec_position_readout``.

A from-scratch LM has to discover by itself how "Region [k]" follows from the expression: a
content-matching circuit that forms only after a long plateau (research/rec_oracle_probe.py,
oracle region embeddings, 6 candidates: 60 % after 64k examples in one run, still at chance
after 90k in two variants; with supervision of the matching head, 97 % after 26k). Head 0
of the last two layers is supervised, in one of two layouts:

- ``quote``: second-to-last layer, at the expression's closing quote -> the target
  ``<regionK>``; last layer, at the token that predicts the number -> that quote. In the demo
  model the matching head found the target (argmax right ~60 %) but the number ignored it:
  the target's identity did not survive the quote's value path (a linear probe could not
  read it there, while it reads it at the target token itself at 87 %).
- ``answer``: second-to-last layer, at the token that predicts the number -> the closing
  quote (which holds the expression); last layer, from that same token -> the target. The
  target's identity then reaches the prediction through one value path, trained directly by
  the answer's loss. Used by the demo model's late stages.

``rec_readout_loss`` is a further option: the closing quote's own output predicts the
number. ``ExpressionReadout`` is another: the number-predicting token's input to the last
layer (where the answer head's query comes from) must name the words of the expression. In
the demo model a linear probe read "largest" / "smallest" there at ~100 % but leftmost /
rightmost / topmost / bottommost at ~30-60 % (research/rec_attention_probe.py shows the head
then ranks a group by size but not by position), though an oracle LM of the same size learns
to rank by position in ~8k examples once the words reach the query
(research/rec_oracle_probe.py --superlative). Pretrained LLMs (Vicuna in the paper) bring
such circuits with them and need no such help.

``RegionPositionReadout`` is the other side of the same head: its keys come from the region
tokens' input to the last layer, so those must carry where each region lies. A model trained
with the mask position encoder and the expression readout answered topmost / bottommost at
91 / 95 % but leftmost / rightmost at 37 / 41 % (its position encoder's output moved ~4x more
with y than with x); 5000 steps with this readout took them to 91 / 95 % and "left of" from
25 to 81 %.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rgpt_model.mask_position import mask_moments
from rgpt_model.training.aux_losses import (
    AuxLoss,
    AuxLossInputs,
    AuxLossSetup,
    register_aux_loss,
)

SUPERVISED_HEAD = 0  # the supervised head of each layer
REC_POINTER_LAYOUTS = ("quote", "answer")


def rec_pointers(positions: torch.Tensor, layout: str = "quote") -> torch.Tensor:
    """Attention targets (P, 4) of (sample, layer, query, key) from ``collate``'s
    ``rec_positions`` rows of (sample, closing quote, token before the number, target)."""
    if layout not in REC_POINTER_LAYOUTS:
        raise ValueError(f"REC pointer layout {layout!r} is not one of {REC_POINTER_LAYOUTS}")
    b, quote, number, target = positions.unbind(1)
    second_last, last = torch.full_like(b, -2), torch.full_like(b, -1)
    if layout == "quote":
        rows = [(b, second_last, quote, target), (b, last, number, quote)]
    else:
        rows = [(b, second_last, number, quote), (b, last, number, target)]
    return torch.cat([torch.stack(r, 1) for r in rows])


def rec_attention_loss(attentions: tuple[torch.Tensor, ...], pointers: torch.Tensor
                       ) -> torch.Tensor:
    """Mean -log attention weight of the supervised head from each query onto its key.

    ``attentions``: per layer (B, heads, T, T) weights (eager attention); ``pointers``:
    (P, 4) rows of (sample, layer, query position, key position), e.g. from
    :func:`rec_pointers`; layer counts from the end (-1 = last).
    """
    if pointers.numel() == 0:
        return attentions[-1].new_zeros(())
    if len(attentions) < int(-pointers[:, 1].min()):
        raise ValueError(f"REC attention supervision needs at least "
                         f"{int(-pointers[:, 1].min())} LM layers, the LM has {len(attentions)}")
    p = pointers.to(attentions[-1].device)
    weights = []
    for layer in p[:, 1].unique().tolist():  # one gather per supervised layer
        b, _, q, k = p[p[:, 1] == layer].unbind(1)
        weights.append(attentions[layer][b, SUPERVISED_HEAD, q, k])
    return -torch.log(torch.cat(weights).float().clamp_min(1e-6)).mean()


def rec_readout_loss(logits: torch.Tensor, positions: torch.Tensor, input_ids: torch.Tensor
                     ) -> torch.Tensor:
    """Cross-entropy of the answer's number predicted at the expression's closing quote.

    ``positions``: ``collate``'s ``rec_positions``; the number is the input token after the
    one that predicts it. The LM loss never trains predictions at prompt positions, so this
    readout competes with nothing.
    """
    if positions.numel() == 0:
        return logits.new_zeros(())
    b, quote, number, _ = positions.to(logits.device).unbind(1)
    target = input_ids.to(logits.device)[b, number + 1]
    return torch.nn.functional.cross_entropy(logits[b, quote].float(), target)


def expression_words(input_ids: torch.Tensor, positions: torch.Tensor, vocab_size: int
                     ) -> torch.Tensor:
    """(P, vocab) multi-hot of the token ids between each REC row's opening and closing
    quote (``positions``: ``collate``'s ``rec_positions``; the opening quote is the nearest
    earlier token equal to the closing one). A row with no opening quote (a prompt whose
    only quote is an apostrophe) stays empty: every word is then read as absent."""
    words = torch.zeros(len(positions), vocab_size)
    for row, (b, quote, _, _) in enumerate(positions.tolist()):
        ids = input_ids[b, :quote].tolist()
        closing = int(input_ids[b, quote])
        if closing in ids:
            opening = len(ids) - 1 - ids[::-1].index(closing)
            words[row, ids[opening + 1:]] = 1.0
    return words


def _has_rec_rows(batch: dict[str, torch.Tensor]) -> bool:
    return batch["rec_positions"].numel() > 0


class RecAttentionLoss(AuxLoss):
    """``rec_attention_loss`` of ``rec_pointers`` in one layout; steps without a REC answer
    that names a region leave it out."""

    needs_attentions = True

    def __init__(self, layout: str) -> None:
        super().__init__()
        if layout not in REC_POINTER_LAYOUTS:
            raise ValueError(f"REC pointer layout {layout!r} is not one of {REC_POINTER_LAYOUTS}")
        self.layout = layout

    def applies(self, batch: dict[str, torch.Tensor]) -> bool:
        return _has_rec_rows(batch)

    def forward(self, inputs: AuxLossInputs) -> torch.Tensor:
        pointers = rec_pointers(inputs.batch["rec_positions"], self.layout)
        return rec_attention_loss(inputs.lm_outputs.attentions, pointers)


class RecNumberReadout(AuxLoss):
    """``rec_readout_loss``: the closing quote's own logits predict the answer's number."""

    def forward(self, inputs: AuxLossInputs) -> torch.Tensor:
        return rec_readout_loss(inputs.lm_outputs.logits, inputs.batch["rec_positions"],
                                inputs.batch["input_ids"])


class ExpressionReadout(AuxLoss):
    """Linear readout of the expression's words (multi-label) from the hidden state that
    enters the last layer at the token predicting the REC answer's number. Training only."""

    needs_hidden_states = True

    def __init__(self, hidden_size: int, vocab_size: int) -> None:
        super().__init__()
        self.head = nn.Linear(hidden_size, vocab_size)
        # an expression names a handful of the vocabulary: start every word near absent
        nn.init.constant_(self.head.bias, -math.log(vocab_size))

    def applies(self, batch: dict[str, torch.Tensor]) -> bool:
        return _has_rec_rows(batch)

    def forward(self, inputs: AuxLossInputs) -> torch.Tensor:
        return self.loss(inputs.lm_outputs.hidden_states, inputs.batch["rec_positions"],
                         inputs.batch["input_ids"])

    def loss(self, hidden_states: tuple[torch.Tensor, ...], positions: torch.Tensor,
             input_ids: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy summed over the vocabulary, averaged over REC rows;
        ``hidden_states``: the LM's (embeddings, layer 1, ..., last layer's normed output)."""
        if positions.numel() == 0:
            return hidden_states[-1].new_zeros(())
        p = positions.to(hidden_states[-2].device)
        h = hidden_states[-2][p[:, 0], p[:, 2]]  # input to the last layer
        target = expression_words(input_ids, positions, self.head.out_features).to(h.device)
        logits = self.head(h.to(self.head.weight.dtype)).float()
        return nn.functional.binary_cross_entropy_with_logits(
            logits, target, reduction="sum") / len(p)


class RegionPositionReadout(AuxLoss):
    """Linear readout of each region's mask centre (x, y, scaled to -1..1) from the hidden
    state that enters the last layer at its region token. Training only."""

    needs_hidden_states = True
    RESOLUTION = 64  # mask_moments grid: centres to 1/128 of the frame, like the encoder's

    def __init__(self, hidden_size: int, region_token_ids: list[int] | None = None) -> None:
        super().__init__()
        self.region_token_ids = list(region_token_ids or [])
        self.head = nn.Linear(hidden_size, 2)
        # hidden states entering the last layer at region tokens are large (norm ~700 in the
        # demo model): a random head's first errors are in the hundreds and their gradient
        # swamped the LM's; from zero the head first predicts the frame's centre
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, inputs: AuxLossInputs) -> torch.Tensor:
        batch = inputs.batch
        ids = batch["input_ids"]
        region_tokens = torch.isin(ids, torch.as_tensor(self.region_token_ids, device=ids.device))
        return self.loss(inputs.lm_outputs.hidden_states, region_tokens, batch["masks"],
                         batch["region_feature_index"])

    def loss(self, hidden_states: tuple[torch.Tensor, ...], region_tokens: torch.Tensor,
             masks: torch.Tensor, region_feature_index: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the batch's region tokens and both axes.

        ``region_tokens``: (B, T) bool, the placeholders in row-major order; the p-th takes
        ``masks[region_feature_index[p]]`` (as in ``RGPTForCausalLM.merge_embeddings``)."""
        h = hidden_states[-2][region_tokens.to(hidden_states[-2].device)]
        if h.shape[0] == 0:
            return hidden_states[-1].new_zeros(())
        centres = mask_moments(masks, self.RESOLUTION)[:, :2]
        target = 2.0 * centres[region_feature_index.to(centres.device)] - 1.0
        pred = self.head(h.to(self.head.weight.dtype)).float()
        return nn.functional.mse_loss(pred, target.float().to(pred.device))


def _expression_readout(setup: AuxLossSetup) -> ExpressionReadout:
    torch.manual_seed(setup.cfg.seed + 2)
    text = setup.model.config.text_config
    return ExpressionReadout(text.hidden_size, text.vocab_size)


def _position_readout(setup: AuxLossSetup) -> RegionPositionReadout:
    torch.manual_seed(setup.cfg.seed + 3)
    config = setup.model.config
    return RegionPositionReadout(config.text_config.hidden_size, config.region_token_ids)


def _attention_quote(setup: AuxLossSetup) -> RecAttentionLoss:
    return RecAttentionLoss("quote")


def _attention_answer(setup: AuxLossSetup) -> RecAttentionLoss:
    return RecAttentionLoss("answer")


def _number_readout(setup: AuxLossSetup) -> RecNumberReadout:
    return RecNumberReadout()


register_aux_loss("rec_attention_quote", _attention_quote)
register_aux_loss("rec_attention_answer", _attention_answer)
register_aux_loss("rec_number_readout", _number_readout)
register_aux_loss("rec_expression_readout", _expression_readout)
register_aux_loss("rec_position_readout", _position_readout)
