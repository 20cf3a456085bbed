"""Attention supervision and a number readout for REC answers (training only; the exported
model is unchanged).

A from-scratch LM has to discover by itself how "Region [k]" follows from the expression: a
content-matching circuit that forms only after a long plateau (scripts/rec_oracle_probe.py,
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
number. Pretrained LLMs (Vicuna in the paper) bring such circuits with them and need no such
help.
"""

from __future__ import annotations

import torch

from rgpt_model.training.config import REC_POINTER_LAYOUTS

SUPERVISED_HEAD = 0  # the supervised head of each layer


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
