#!/usr/bin/env python
"""Does the REC answer head rank a superlative's group by the right quantity?

Diagnostic for the demo model's directional superlatives ("the leftmost square"). For each
superlative expression of the synthetic test scenes it teacher-forces the prompt up to
"Region [" and reads the attention of the head the trainer supervises (head 0 of the last
layer, research.rec_attention, layout ``answer``) from that token onto the
candidates. Per superlative word it reports: answer and attention-argmax accuracy, whether
the argmax lies in the expression's attribute group ("square", "red object"), the attention
mass on the target and on the group, and the mean correlation, over groups of two or more,
between a member's attention and how extreme it is on the word's axis (x for
leftmost/rightmost, y for topmost/bottommost, area for largest/smallest).

A head that filters by attribute and then ranks puts ~all its mass on the group and shows a
correlation near 1; one that only filters shows the group mass but a correlation near 0 and
an accuracy of ~1 / group size.

    python -m research.rec_attention_probe --num-scenes 40
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rgpt_model import prompts
from rgpt_model.build import load_predictor
from rgpt_model.data.attributes import COLOURS, SHAPES, SIZES
from rgpt_model.data.scene import Region
from rgpt_model.data.synthetic import generate_scene
from rgpt_model.predictor import RGPTPredictor

# superlative word -> (region quantity, sign that makes "more extreme" larger)
AXES = {
    "leftmost": (lambda r: r.centroid[0], -1.0),
    "rightmost": (lambda r: r.centroid[0], 1.0),
    "topmost": (lambda r: r.centroid[1], -1.0),
    "bottommost": (lambda r: r.centroid[1], 1.0),
    "largest": (lambda r: float(r.area), 1.0),
    "smallest": (lambda r: float(r.area), -1.0),
}


def attribute_group(expression: str, regions: list[Region]) -> list[int]:
    """Indices of the regions that have every attribute the expression names."""
    words = set(expression.split())
    wanted = {attr: v for attr, values in (("colour", COLOURS), ("shape", SHAPES),
                                           ("size", SIZES)) for v in values if v in words}
    return [j for j, r in enumerate(regions) if all(getattr(r, a) == v for a, v in wanted.items())]


def head_attention(predictor: RGPTPredictor, image, labels, region_ids: list[int],
                   expression: str) -> tuple[np.ndarray, str]:
    """Supervised head's attention from "Region [" onto each candidate, and the next token."""
    model = predictor.model
    frame = predictor.encode(image, labels, region_ids)
    k = len(region_ids)
    text = prompts.generation_prompt(prompts.rec_prompt(expression, k)) + " Region ["
    with torch.no_grad():
        embeds, attention_mask, ids = predictor.embed_prompts(frame, [text], [list(range(k))])
        out = model.language_model(inputs_embeds=embeds, attention_mask=attention_mask,
                                   output_attentions=True)
    region_token_ids = torch.as_tensor(model.config.region_token_ids, device=ids.device)
    pos = torch.isin(ids[0], region_token_ids).nonzero()[:, 0]
    att = out.attentions[-1][0, 0, -1, pos].float().cpu().numpy()
    next_token = predictor.processor.tokenizer.convert_ids_to_tokens(
        [int(out.logits[0, -1].argmax())])[0]
    return att, next_token


def probe(predictor: RGPTPredictor, num_scenes: int, split: str = "test", seed: int = 0,
          progress: bool = True) -> dict[str, dict[str, float]]:
    """Per superlative word: the statistics the module docstring lists."""
    predictor.model.language_model.set_attn_implementation("eager")  # attentions returned
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for i in tqdm(range(num_scenes), desc="scenes", disable=not progress):
        scene = generate_scene(seed, i, split)
        rng = np.random.default_rng([seed, i, 7])  # one shuffled candidate order per scene
        order = [scene.regions[int(j)] for j in rng.permutation(len(scene.regions))]
        for e in scene.expressions:
            word = e.text.split()[1] if e.kind == "superlative" else None
            if word not in AXES:
                continue
            att, next_token = head_attention(predictor, scene.image, scene.labels,
                                             [r.id for r in order], e.text)
            target = next(j for j, r in enumerate(order) if r.id == e.target_ids[0])
            group = attribute_group(e.text, order)
            s = sums[word]
            s["n"] += 1
            s["answer_accuracy"] += next_token == str(target + 1)
            s["attention_argmax_accuracy"] += int(att.argmax()) == target
            s["argmax_in_group"] += int(att.argmax()) in group
            s["target_mass"] += float(att[target] / att.sum())
            s["group_mass"] += float(att[group].sum() / att.sum())
            s["group_size"] += len(group)
            quantity, sign = AXES[word]
            extremeness = np.array([sign * quantity(order[j]) for j in group])
            if len(group) > 1 and np.std(att[group]) > 0:
                s["groups_ranked"] += 1
                s["rank_correlation"] += float(np.corrcoef(extremeness, att[group])[0, 1])
    report = {}
    for word, s in sums.items():
        n, g = s.pop("n"), s.pop("groups_ranked", 0.0)
        corr = s.pop("rank_correlation", 0.0)
        report[word] = {k: round(v / n, 3) for k, v in s.items()}
        report[word]["rank_correlation"] = round(corr / g, 3) if g else float("nan")
        report[word]["num"] = int(n)
    return report


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=None,
                   help="model directory (default: the built-in demo model)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--num-scenes", type=int, default=40, help="synthetic scenes to probe")
    p.add_argument("--split", default="test", choices=["train", "val", "test"],
                   help="synthetic split")
    p.add_argument("--seed", type=int, default=0, help="synthetic dataset seed")
    p.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    predictor = load_predictor(args.model, device=args.device)
    report = probe(predictor, args.num_scenes, args.split, args.seed, not args.no_progress)
    text = json.dumps(report, indent=1, sort_keys=True)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
