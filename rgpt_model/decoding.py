"""Greedy decoding of a batch of merged prompt embeddings: three strategies, one contract.

Every decoder takes ``(model, inputs_embeds, attention_mask, max_new_tokens, eos_token_id,
pad_token_id, *, should_stop=None, row_groups=None)`` and returns (new token ids per row
without EOS, mean probability of each row's generated tokens including the EOS step). All give
the same tokens.

- ``shared_prefix`` (the predictor's default): every region prompt of a frame starts with the
  same system prompt + image tokens, so the common prefix is prefilled once (batch 1), its
  key/value cache is repeated to R rows, the R suffixes are prefilled as one right-aligned
  padded block, and decoding runs as one batch that shrinks as rows hit EOS. The prefix is
  found in embedding space (after placeholder merging), and position ids are explicit, so each
  row sees exactly the positions it would see alone. Rows of several frames (``row_groups``:
  the frame of each row) share a prefix within their frame only: the frames' prefixes have one
  length (same system prompt, same image token count), so they are prefilled as one batch and
  each row takes its frame's cache row.
- ``batched``: one left-padded transformers ``generate`` call.
- ``naive``: each row alone through ``generate`` (the reference the others are tested against).
  These two ignore ``row_groups``: every row carries its whole prompt.

Cancellation: ``should_stop`` is polled before every forward pass of the LM (between decoding
steps); when it returns True the decoder raises :class:`~rgpt_model.errors.QueryCancelledError`,
so the k-th poll that says stop means k - 1 forward passes ran.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from transformers import DynamicCache, GenerationConfig, StoppingCriteria, StoppingCriteriaList

from .errors import QueryCancelledError

logger = logging.getLogger(__name__)

ShouldStop = Callable[[], bool] | None
Decoded = tuple[list[list[int]], list[float]]


def check_cancelled(should_stop: ShouldStop) -> None:
    """Raise QueryCancelledError when ``should_stop`` says so."""
    if should_stop is not None and should_stop():
        raise QueryCancelledError("query cancelled while decoding; its partial answer is dropped")


class _PollBetweenSteps(StoppingCriteria):
    """transformers calls this after each generated token: poll before the next forward."""

    def __init__(self, should_stop: ShouldStop, max_new_tokens: int) -> None:
        self.should_stop, self.max_new_tokens = should_stop, max_new_tokens

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        if input_ids.shape[1] < self.max_new_tokens:  # another forward pass follows
            check_cancelled(self.should_stop)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _language_model(model):
    return getattr(model, "language_model", model)


def _hf_generate(lm, inputs_embeds, attention_mask, max_new_tokens, eos_token_id, pad_token_id,
                 should_stop: ShouldStop):
    check_cancelled(should_stop)
    cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id if pad_token_id is not None else eos_token_id,
        output_logits=True,
        return_dict_in_generate=True,
    )
    criteria = StoppingCriteriaList([_PollBetweenSteps(should_stop, max_new_tokens)])
    out = lm.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                      generation_config=cfg, stopping_criteria=criteria)
    seqs = out.sequences
    if seqs.shape[1] > len(out.logits):  # some versions prepend the (empty) prompt ids
        seqs = seqs[:, -len(out.logits) :]
    probs = torch.stack([lg.float().softmax(-1) for lg in out.logits], dim=1)  # (B, L, V)
    tok_p = probs.gather(-1, seqs[:, : probs.shape[1], None]).squeeze(-1)
    tokens, means = [], []
    for b in range(seqs.shape[0]):
        row = seqs[b].tolist()
        end = row.index(eos_token_id) + 1 if eos_token_id in row else len(row)
        p = tok_p[b, :end]
        means.append(float(p.mean()) if p.numel() else 0.0)
        tokens.append([t for t in row[:end] if t != eos_token_id])
    return tokens, means


@torch.no_grad()
def greedy_generate(model, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                    max_new_tokens: int, eos_token_id: int | None, pad_token_id: int | None,
                    *, should_stop: ShouldStop = None, row_groups=None) -> Decoded:
    """All rows as one left-padded transformers ``generate`` batch."""
    return _hf_generate(_language_model(model), inputs_embeds, attention_mask, max_new_tokens,
                        eos_token_id, pad_token_id, should_stop)


@torch.no_grad()
def naive_generate(model, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                   max_new_tokens: int, eos_token_id: int | None,
                   pad_token_id: int | None = None, *, should_stop: ShouldStop = None,
                   row_groups=None) -> Decoded:
    """Reference: each row alone (batch 1, no padding) through transformers ``generate``."""
    lm = _language_model(model)
    tokens, means = [], []
    for row in split_prompt_rows(inputs_embeds, attention_mask):
        ones = torch.ones((1, row.shape[0]), dtype=torch.long, device=row.device)
        t, m = _hf_generate(lm, row[None], ones, max_new_tokens, eos_token_id, pad_token_id,
                            should_stop)
        tokens += t
        means += m
    return tokens, means


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


def _group_prefix_length(rows: list[torch.Tensor], groups: list[int]) -> int:
    """The longest prefix every group's rows share within the group (groups: one per row)."""
    members: dict[int, list[torch.Tensor]] = {}
    for row, g in zip(rows, groups, strict=True):
        members.setdefault(g, []).append(row)
    return min(common_prefix_length(m) for m in members.values())


@torch.no_grad()
def shared_prefix_generate(
    model,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int | None = None,
    *,
    should_stop: ShouldStop = None,
    prefix_len: int | None = None,
    row_groups: Sequence[int] | None = None,
) -> Decoded:
    """Greedy decoding of a batch of prompts that share a prefix (module docstring).

    ``row_groups``: per row, the group (frame) whose prefix it shares; default: one group.
    ``prefix_len`` overrides the detected common prefix (it is capped so every row keeps at
    least one suffix token).
    """
    lm = _language_model(model)
    embed = lm.get_input_embeddings()
    device = inputs_embeds.device
    rows = split_prompt_rows(inputs_embeds, attention_mask)
    n = len(rows)
    groups = [0] * n if row_groups is None else [int(g) for g in row_groups]
    if len(groups) != n:
        raise ValueError(f"row_groups has {len(groups)} entries for {n} prompt rows")
    lens = torch.tensor([r.shape[0] for r in rows], device=device)
    if int(lens.min()) < 1:
        raise ValueError("every prompt row needs at least one token")
    p = _group_prefix_length(rows, groups) if prefix_len is None else int(prefix_len)
    p = max(0, min(p, int(lens.min()) - 1))

    cache = DynamicCache(config=lm.config)
    if p > 0:  # the shared part: computed once per group (batch = groups), then gathered
        first = {g: b for b, g in reversed(list(enumerate(groups)))}  # group -> its first row
        order = sorted(first, key=first.get)
        heads = torch.stack([rows[first[g]][:p] for g in order])
        check_cancelled(should_stop)
        lm(
            inputs_embeds=heads,
            position_ids=torch.arange(p, device=device).expand(len(order), p),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        slot = {g: k for k, g in enumerate(order)}
        cache.batch_select_indices(torch.tensor([slot[g] for g in groups], device=device))

    # suffixes, right-aligned (left-padded between prefix and suffix) so the last column is
    # every row's last prompt token; pads are masked out and never attended to
    s_lens = lens - p
    s_max = int(s_lens.max())
    block = inputs_embeds.new_zeros((n, s_max, inputs_embeds.shape[-1]))
    attn = torch.zeros((n, p + s_max), dtype=torch.long, device=device)
    attn[:, :p] = 1
    pos = torch.ones((n, s_max), dtype=torch.long, device=device)
    for b, r in enumerate(rows):
        s = int(s_lens[b])
        block[b, s_max - s :] = r[p:]
        attn[b, p + s_max - s :] = 1
        pos[b, s_max - s :] = torch.arange(p, p + s, device=device)
    padded = bool((s_lens != s_max).any())  # no pads: skip masks (causal path, cheaper)
    check_cancelled(should_stop)
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
        if step + 1 == max_new_tokens:
            break
        if bool(done.any()):
            keep = torch.nonzero(~done).flatten()
            if keep.numel() == 0:
                break
            cache.batch_select_indices(keep)  # finished rows stop costing compute
            active, nxt, attn, next_pos = active[keep], nxt[keep], attn[keep], next_pos[keep]
        attn = torch.cat([attn, attn.new_ones((attn.shape[0], 1))], dim=1)
        check_cancelled(should_stop)
        out = lm(
            inputs_embeds=embed(nxt[:, None]),
            attention_mask=attn if padded else None,
            position_ids=next_pos[:, None],
            past_key_values=cache,
            use_cache=True,
        )
        logits = out.logits[:, -1]
        next_pos = next_pos + 1

    logger.debug("shared prefix %d tokens, %d rows in %d group(s), suffixes %s", p, n,
                 len(set(groups)), s_lens.tolist())
    return tokens, [sum(q) / len(q) if q else 0.0 for q in probs]


DECODERS: dict[str, Callable[..., Decoded]] = {
    "shared_prefix": shared_prefix_generate,
    "batched": greedy_generate,
    "naive": naive_generate,
}
