#!/usr/bin/env python
"""How many REC examples does a demo-size LM need? Oracle region embeddings, no vision.

Diagnostic for the demo model's REC gap. Each sequence is N candidate region embeddings
(learned colour + shape embeddings of random objects, one unique target), then
"which <colour> <shape> ?" and the answer token k (1-based index of the match). With
``--identity`` each candidate also gets its placeholder's own embedding, as
``RGPTConfig.region_placeholder_identity`` does. The LM has the demo model's size.

    python scripts/rec_oracle_probe.py --steps 2000 --identity
    python scripts/rec_oracle_probe.py --steps 600 --identity --attn-supervision 1.0

Other flags test remedies for the plateau before the matching circuit forms: ``--tied``
(answer digits double as identities), ``--aligned`` (regions made of the LM's own word
embeddings), ``--start-regions`` (fewer candidates first), ``--attn-supervision`` (the
trainer's loss, rgpt_model.training.rec_attention).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from rgpt_model.training.rec_attention import rec_attention_loss

N_COLOURS = N_SHAPES = 8
WHICH, QMARK, SEP, DIGITS = 16, 17, 18, 19  # token ids; 19.. answer digits, then identities


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
    params = [*lm.parameters(), *colour.parameters(), *shape.parameters()]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01, betas=(0.9, 0.98))
    emb = lm.get_input_embeddings()

    def batch(size: int, g: torch.Generator, n: int = n) -> tuple[torch.Tensor, torch.Tensor]:
        c = torch.randint(0, N_COLOURS, (size, n), generator=g)
        s = torch.randint(0, N_SHAPES, (size, n), generator=g)
        t = torch.randint(0, n, (size,), generator=g)
        for b in range(size):  # the target's colour-shape pair is unique in its sequence
            for i in range(n):
                while i != t[b] and c[b, i] == c[b, t[b]] and s[b, i] == s[b, t[b]]:
                    c[b, i] = torch.randint(0, N_COLOURS, (1,), generator=g)
        regions = emb(c) + emb(N_COLOURS + s) if a.aligned else colour(c) + shape(s)
        if a.identity:
            regions = regions + emb(torch.arange(identity0, identity0 + n)).unsqueeze(0)
        rows = torch.arange(size)
        words = torch.stack([torch.full((size,), WHICH), c[rows, t], N_COLOURS + s[rows, t],
                             torch.full((size,), QMARK), torch.full((size,), SEP)], 1)
        return torch.cat([regions, emb(words)], 1), DIGITS + t, t

    g, g_eval = torch.Generator().manual_seed(a.seed), torch.Generator().manual_seed(a.seed + 1)
    t0 = time.time()
    for step in range(1, a.steps + 1):
        for group in opt.param_groups:
            group["lr"] = a.lr * min(1.0, step / 50)
        k = n
        if a.start_regions:
            k = min(n, a.start_regions + (n - a.start_regions + 1) * step // a.ramp_steps)
        x, y, t = batch(a.batch, g, k)
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
                x, y, _ = batch(512, g_eval)
                acc = (lm(inputs_embeds=x).logits[:, -1].argmax(-1) == y).float().mean().item()
            print(f"step {step} examples {step * a.batch} loss {loss.item():.3f} "
                  f"accuracy {acc:.3f} (chance {1 / n:.3f}) {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
