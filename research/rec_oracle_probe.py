#!/usr/bin/env python
"""How many REC examples does a demo-size LM need? Oracle region embeddings, no vision.

Diagnostic for the demo model's REC gap. Each sequence is N candidate region embeddings
(learned colour + shape embeddings of random objects, one unique target), then
"which <colour> <shape> ?" and the answer token k (1-based index of the match). With
``--identity`` each candidate also gets its placeholder's own embedding, as
``RGPTConfig.region_placeholder_identity`` does. The LM has the demo model's size.

    python -m research.rec_oracle_probe --steps 2000 --identity
    python -m research.rec_oracle_probe --steps 600 --identity --attn-supervision 1.0

Other flags test remedies for the plateau before the matching circuit forms: ``--tied``
(answer digits double as identities), ``--aligned`` (regions made of the LM's own word
embeddings), ``--start-regions`` (fewer candidates first), ``--attn-supervision`` (the
trainer's loss, research.rec_attention).

``--superlative F`` makes a fraction F of the sequences "which leftmost|rightmost <shape> ?"
questions: each candidate also carries an x position (Fourier features through a learnt MLP,
as rgpt_model.mask_position does), 2-3 candidates share the named shape, and the answer is the
extreme one. It asks whether the demo-size LM can learn to rank a group by position, and how
many examples that takes, given a clean position code:

    python -m research.rec_oracle_probe --steps 3000 --identity --attn-supervision 1.0 \
        --superlative 0.5 [--superlative-from 1250]

``--superlative-from`` asks attribute questions only until that step, as for the demo model,
whose attribute circuit formed long before it had a position code.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from research.rec_attention import rec_attention_loss

N_COLOURS = N_SHAPES = 8
# token ids; DIGITS.. answer digits, then identities
WHICH, QMARK, SEP, LEFTMOST, RIGHTMOST, DIGITS = 16, 17, 18, 19, 20, 21
POSITION_MARGIN = 0.06  # group members differ by this much in x (~8 px of the 128 px scenes)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=2000, help="training steps")
    p.add_argument("--batch", type=int, default=64, help="sequences per step")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (50 warm-up steps)")
    p.add_argument("--regions", type=int, default=6, help="candidates per sequence")
    p.add_argument("--identity", action="store_true",
                   help="add each placeholder's own embedding to its region embedding")
    p.add_argument("--tied", action="store_true",
                   help="tie input/output embeddings and use the answer digit as the identity")
    p.add_argument("--aligned", action="store_true",
                   help="region embedding = the LM's own embeddings of its colour and shape words")
    p.add_argument("--attn-supervision", type=float, default=0.0,
                   help="weight of a loss pulling head 0 of the last layer at the answer "
                        "position onto the target region (training only)")
    p.add_argument("--start-regions", type=int, default=0,
                   help="curriculum: begin with this many candidates (0 = no curriculum)")
    p.add_argument("--ramp-steps", type=int, default=600,
                   help="curriculum: steps to grow from --start-regions to --regions")
    p.add_argument("--superlative", type=float, default=0.0,
                   help="fraction of sequences asking for the leftmost/rightmost <shape>")
    p.add_argument("--superlative-from", type=int, default=0,
                   help="ask superlatives only from this step on (attribute questions before, "
                        "as for a model that learnt attributes first)")
    p.add_argument("--eval-every", type=int, default=100, help="steps between evaluations")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    return p.parse_args()


def main() -> None:
    a = parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    n = a.regions
    identity0 = DIGITS if a.tied else DIGITS + n
    cfg = LlamaConfig(vocab_size=identity0 + n, hidden_size=192, intermediate_size=512,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=64,
                      tie_word_embeddings=a.tied)
    lm = LlamaForCausalLM(cfg)
    if a.attn_supervision > 0:
        lm.set_attn_implementation("eager")  # attention weights are needed
    colour, shape = torch.nn.Embedding(N_COLOURS, 192), torch.nn.Embedding(N_SHAPES, 192)
    freqs = torch.pi * 2.0 ** torch.arange(4, dtype=torch.float32)
    position = torch.nn.Sequential(torch.nn.Linear(1 + 2 * len(freqs), 64), torch.nn.GELU(),
                                   torch.nn.Linear(64, 192))
    params = [*lm.parameters(), *colour.parameters(), *shape.parameters(),
              *position.parameters()]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01, betas=(0.9, 0.98))
    emb = lm.get_input_embeddings()

    def superlative_rows(size: int, g: torch.Generator, n: int, s: torch.Tensor,
                         x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewrite rows in place into leftmost/rightmost questions: (target, direction)."""
        t, direction = torch.zeros(size, dtype=torch.long), torch.zeros(size, dtype=torch.long)
        for b in range(size):
            k = int(torch.randint(2, min(3, n) + 1, (1,), generator=g))
            members = torch.randperm(n, generator=g)[:k]
            others = torch.randint(1, N_SHAPES, (n,), generator=g)
            group_shape = int(s[b, members[0]])
            s[b] = (group_shape + others) % N_SHAPES  # any shape but the group's
            s[b, members] = group_shape
            while True:  # no two group members closer than the margin in x
                xs = torch.sort(x[b, members]).values
                if bool((xs[1:] - xs[:-1] >= POSITION_MARGIN).all()):
                    break
                x[b, members] = torch.rand(k, generator=g)
            direction[b] = int(torch.randint(0, 2, (1,), generator=g))
            pick = torch.argmax if direction[b] else torch.argmin
            t[b] = members[pick(x[b, members])]
        return t, direction

    def batch(size: int, g: torch.Generator, n: int = n, superlative: float | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        superlative = a.superlative if superlative is None else superlative
        c = torch.randint(0, N_COLOURS, (size, n), generator=g)
        s = torch.randint(0, N_SHAPES, (size, n), generator=g)
        x = torch.rand(size, n, generator=g)
        t = torch.randint(0, n, (size,), generator=g)
        for b in range(size):  # the target's colour-shape pair is unique in its sequence
            for i in range(n):
                while i != t[b] and c[b, i] == c[b, t[b]] and s[b, i] == s[b, t[b]]:
                    c[b, i] = torch.randint(0, N_COLOURS, (1,), generator=g)
        sup = torch.rand(size, generator=g) < superlative
        direction = torch.zeros(size, dtype=torch.long)
        if sup.any():
            idx = sup.nonzero()[:, 0]
            ss, xs = s[idx], x[idx]
            ts, ds = superlative_rows(len(idx), g, n, ss, xs)
            s[idx], x[idx], t[idx], direction[idx] = ss, xs, ts, ds
        regions = emb(c) + emb(N_COLOURS + s) if a.aligned else colour(c) + shape(s)
        if a.superlative > 0:
            angles = x[..., None] * freqs
            regions = regions + position(torch.cat([2 * x[..., None] - 1, angles.sin(),
                                                    angles.cos()], -1))
        if a.identity:
            regions = regions + emb(torch.arange(identity0, identity0 + n)).unsqueeze(0)
        rows = torch.arange(size)
        first = torch.where(sup, LEFTMOST + direction, c[rows, t])
        words = torch.stack([torch.full((size,), WHICH), first, N_COLOURS + s[rows, t],
                             torch.full((size,), QMARK), torch.full((size,), SEP)], 1)
        return torch.cat([regions, emb(words)], 1), DIGITS + t, t, sup

    g, g_eval = torch.Generator().manual_seed(a.seed), torch.Generator().manual_seed(a.seed + 1)
    t0 = time.time()
    for step in range(1, a.steps + 1):
        for group in opt.param_groups:
            group["lr"] = a.lr * min(1.0, step / 50)
        k = n
        if a.start_regions:
            k = min(n, a.start_regions + (n - a.start_regions + 1) * step // a.ramp_steps)
        x, y, t, _ = batch(a.batch, g, k, None if step > a.superlative_from else 0.0)
        out = lm(inputs_embeds=x, output_attentions=a.attn_supervision > 0)
        loss = F.cross_entropy(out.logits[:, -1], y)
        if a.attn_supervision > 0:  # answer position (last) -> target region (position t)
            rows = torch.arange(len(t))
            pointers = torch.stack([rows, torch.full_like(rows, -1),
                                    torch.full_like(rows, x.shape[1] - 1), t], 1)
            loss = loss + a.attn_supervision * rec_attention_loss(out.attentions, pointers)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % a.eval_every == 0:
            with torch.no_grad():
                x, y, _, sup = batch(512, g_eval)
                right = lm(inputs_embeds=x).logits[:, -1].argmax(-1) == y
            acc = right.float().mean().item()
            split = ""
            if a.superlative > 0:
                split = (f" attribute {right[~sup].float().mean().item():.3f}"
                         f" superlative {right[sup].float().mean().item():.3f}")
            print(f"step {step} examples {step * a.batch} loss {loss.item():.3f} "
                  f"accuracy {acc:.3f}{split} (chance {1 / n:.3f}) {time.time() - t0:.0f} s",
                  flush=True)


if __name__ == "__main__":
    main()
