"""Shared-prefix greedy decoding: one KV cache for the common prefix, all rows in one batch.

Why: every region prompt of a frame starts with the same system prompt + image tokens (+ often
the same task text); only the region token and what follows differ. Running each full prompt
(or a left-padded batch of them) recomputes that prefix R times. Here the prefix is prefilled
once (batch 1), its key/value cache is repeated to R rows, the R suffixes are prefilled as one
right-aligned padded block, and decoding runs as one batch that shrinks as rows hit EOS.

The prefix is found in *embedding* space (rows compared after placeholder merging), so two
prompts that differ only in which region they name share everything up to that region token.
Position ids are explicit, so every row sees exactly the positions it would see alone: the
result equals naive per-row greedy decoding token for token (up to float rounding).

:func:`shared_prefix_generate` has the signature and return value of
:func:`rgpt_model.predictor.greedy_generate`, so it drops into ``RGPTPredictor``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)


@dataclass
class PrefixStats:
    """What the last call shared (for logs and benchmarks)."""

    rows: int = 0
    prefix_len: int = 0
    suffix_lens: tuple[int, ...] = ()
    steps: int = 0


last_stats = PrefixStats()


def _language_model(model):
    return getattr(model, "language_model", model)


def common_prefix_length(rows: list[torch.Tensor]) -> int:
    """Length of the longest prefix (in positions) whose embeddings are equal in every row."""
    m = min(r.shape[0] for r in rows)
    if len(rows) == 1 or m == 0:
        return m
    first = rows[0][:m]
    same = torch.ones(m, dtype=torch.bool, device=first.device)
    for r in rows[1:]:
        same &= (r[:m] == first).all(dim=-1)
    diff = torch.nonzero(~same)
    return int(diff[0, 0]) if diff.numel() else m


def split_prompt_rows(
    inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None
) -> list[torch.Tensor]:
    """Unpadded (L_b, D) embeddings per row (padding may be on either side)."""
    if attention_mask is None:
        return list(inputs_embeds)
    keep = attention_mask.bool()
    return [inputs_embeds[b, keep[b]] for b in range(inputs_embeds.shape[0])]


@torch.no_grad()
def shared_prefix_generate(
    model,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int | None = None,
    *,
    prefix_len: int | None = None,
) -> tuple[list[list[int]], list[float]]:
    """Greedy decoding of a batch of prompts that share a prefix.

    Returns (new token ids per row without EOS, mean probability of the generated tokens per
    row including the EOS step), like ``greedy_generate``. ``prefix_len`` overrides the
    detected common prefix (it is capped so every row keeps at least one suffix token).
    """
    from transformers import DynamicCache

    lm = _language_model(model)
    embed = lm.get_input_embeddings()
    device = inputs_embeds.device
    rows = split_prompt_rows(inputs_embeds, attention_mask)
    n = len(rows)
    lens = torch.tensor([r.shape[0] for r in rows], device=device)
    if int(lens.min()) < 1:
        raise ValueError("every prompt row needs at least one token")
    p = common_prefix_length(rows) if prefix_len is None else int(prefix_len)
    p = max(0, min(p, int(lens.min()) - 1))

    cache = DynamicCache(config=lm.config)
    if p > 0:  # the shared part: computed once, batch 1
        lm(
            inputs_embeds=rows[0][:p].unsqueeze(0),
            position_ids=torch.arange(p, device=device).unsqueeze(0),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache.batch_repeat_interleave(n)

    # suffixes, right-aligned (left-padded between prefix and suffix) so the last column is
    # every row's last prompt token; pads are masked out and never attended to
    s_lens = lens - p
    s_max = int(s_lens.max())
    d = inputs_embeds.shape[-1]
    block = inputs_embeds.new_zeros((n, s_max, d))
    attn = torch.zeros((n, p + s_max), dtype=torch.long, device=device)
    attn[:, :p] = 1
    pos = torch.ones((n, s_max), dtype=torch.long, device=device)
    for b, r in enumerate(rows):
        s = int(s_lens[b])
        block[b, s_max - s :] = r[p:]
        attn[b, p + s_max - s :] = 1
        pos[b, s_max - s :] = torch.arange(p, p + s, device=device)
    padded = bool((s_lens != s_max).any())  # no pads: skip masks (causal path, cheaper)
    out = lm(
        inputs_embeds=block,
        attention_mask=attn if padded else None,
        position_ids=pos,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    logits = out.logits[:, -1]
    next_pos = lens.clone()  # position of each row's next token

    tokens: list[list[int]] = [[] for _ in range(n)]
    probs: list[list[float]] = [[] for _ in range(n)]
    active = torch.arange(n, device=device)  # original row index of each live cache row
    steps = 0
    for step in range(max_new_tokens):
        lp = logits.float().softmax(-1)
        nxt = lp.argmax(-1)
        pn = lp.gather(-1, nxt[:, None]).squeeze(-1)
        done = torch.zeros_like(nxt, dtype=torch.bool)
        for i, (row, t, q) in enumerate(
            zip(active.tolist(), nxt.tolist(), pn.tolist(), strict=True)
        ):
            probs[row].append(q)
            if eos_token_id is not None and t == eos_token_id:
                done[i] = True
            else:
                tokens[row].append(t)
        steps = step + 1
        if step + 1 == max_new_tokens:
            break
        if bool(done.any()):
            keep = torch.nonzero(~done).flatten()
            if keep.numel() == 0:
                break
            cache.batch_select_indices(keep)  # finished rows stop costing compute
            active, nxt, attn, next_pos = active[keep], nxt[keep], attn[keep], next_pos[keep]
        attn = torch.cat([attn, attn.new_ones((attn.shape[0], 1))], dim=1)
        out = lm(
            inputs_embeds=embed(nxt[:, None]),
            attention_mask=attn if padded else None,
            position_ids=next_pos[:, None],
            past_key_values=cache,
            use_cache=True,
        )
        logits = out.logits[:, -1]
        next_pos = next_pos + 1

    global last_stats
    last_stats = PrefixStats(n, p, tuple(int(s) for s in s_lens), steps)
    logger.debug("shared prefix %d tokens, %d rows, suffixes %s", p, n, last_stats.suffix_lens)
    means = [sum(q) / len(q) if q else 0.0 for q in probs]
    return tokens, means


@torch.no_grad()
def naive_generate(
    model,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int | None = None,
) -> tuple[list[list[int]], list[float]]:
    """Reference: each row alone (batch 1, no padding) through transformers ``generate``."""
    from transformers import GenerationConfig

    lm = _language_model(model)
    cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id if pad_token_id is not None else eos_token_id,
    )
    tokens, means = [], []
    for row in split_prompt_rows(inputs_embeds, attention_mask):
        out = lm.generate(
            inputs_embeds=row[None],
            attention_mask=torch.ones((1, row.shape[0]), dtype=torch.long, device=row.device),
            generation_config=cfg,
            output_logits=True,
            return_dict_in_generate=True,
        )
        seq = out.sequences[0, -len(out.logits) :].tolist()
        ps = [float(lg[0].float().softmax(-1)[t]) for lg, t in zip(out.logits, seq, strict=False)]
        end = seq.index(eos_token_id) + 1 if eos_token_id in seq else len(seq)
        tokens.append([t for t in seq[:end] if t != eos_token_id])
        means.append(sum(ps[:end]) / end if end else 0.0)
    return tokens, means
