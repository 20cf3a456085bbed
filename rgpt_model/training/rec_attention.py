"""Attention supervision for REC answers (training only; the exported model is unchanged).

A from-scratch LM has to discover by itself how "Region [k]" follows from the expression: a
content-matching circuit that forms only after a long plateau (scripts/rec_oracle_probe.py,
oracle region embeddings, 6 candidates: 60 % after 64k examples in one run, still at chance
after 90k in two variants; with supervision of the matching head, 97 % after 26k). Two heads
are supervised:

- second-to-last layer, at the expression's closing quote: onto the target ``<regionK>``
  (the expression's words are a few tokens back, so the query is easy to form there);
- last layer, at the token that predicts the number: onto that closing quote, which now
  carries the target's features and placeholder identity.

The LM loss then only has to map what the last head reads to the number. Measured in the
demo model, it did not: the matching head found the target (argmax right 60 %) while the
number ignored it (mostly "1"). ``rec_readout_loss`` therefore also asks the closing quote's
own output to predict the number, so the looked-up identity becomes readable there. Pretrained LLMs
(Vicuna in the paper) bring such circuits with them and need no such help. In the demo
model's multi-turn training the matching head reached about half of its attention on the
target and REC did not follow yet (rgpt_model/demo_model/README.md).
"""

from __future__ import annotations

import torch

SUPERVISED_HEAD = 0  # the supervised head of each layer


def rec_attention_loss(attentions: tuple[torch.Tensor, ...], pointers: torch.Tensor
                       ) -> torch.Tensor:
    """Mean -log attention weight of the supervised head from each query onto its key.

    ``attentions``: per layer (B, heads, T, T) weights (eager attention); ``pointers``:
    (P, 4) rows of (sample, layer, query position, key position) from ``collate``; layer
    counts from the end (-1 = last).
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


def rec_readout_loss(logits: torch.Tensor, pointers: torch.Tensor, input_ids: torch.Tensor
                     ) -> torch.Tensor:
    """Cross-entropy of the answer's number predicted at the expression's closing quote.

    The quote is the key of each last-layer pointer (its query predicts the number, which is
    the next input token); the LM loss never trains predictions at prompt positions, so this
    adds a readout there without competing with anything.
    """
    last = pointers[pointers[:, 1] == -1].to(logits.device)
    if last.numel() == 0:
        return logits.new_zeros(())
    b, _, q, quote = last.unbind(1)
    number = input_ids.to(logits.device)[b, q + 1]
    return torch.nn.functional.cross_entropy(logits[b, quote].float(), number)
