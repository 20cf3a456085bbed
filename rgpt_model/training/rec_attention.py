"""Attention supervision for REC answers (training only; the exported model is unchanged).

A from-scratch LM has to discover by itself that the token predicting "k" in "Region [k]"
should attend to the k-th region placeholder: a content-matching circuit that forms only
after a long plateau (scripts/rec_oracle_probe.py: with oracle region embeddings, 6
candidates, no REC learnt after 90k examples in 2 of 3 seeds; with this loss, 97 % after
26k). The loss pulls one attention head of the last layer at that position onto the target
placeholder; the LM loss then only has to map what the head reads to the number.
Pretrained LLMs (Vicuna in the paper) bring such circuits with them, so they need no such help.
"""

from __future__ import annotations

import torch

SUPERVISED_HEAD = 0  # head 0 of the last layer


def rec_attention_loss(attentions: tuple[torch.Tensor, ...], pointers: torch.Tensor
                       ) -> torch.Tensor:
    """Mean -log attention weight of the supervised head from each query onto its target.

    ``attentions``: per layer (B, heads, T, T) weights (eager attention); ``pointers``:
    (P, 3) rows of (sample, query position, target position) from ``collate``.
    """
    last = attentions[-1]
    if pointers.numel() == 0:
        return last.new_zeros(())
    p = pointers.to(last.device)
    weights = last[p[:, 0], SUPERVISED_HEAD, p[:, 1], p[:, 2]]
    return -torch.log(weights.float().clamp_min(1e-6)).mean()
