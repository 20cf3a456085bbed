"""Turn synthetic scenes into JSONL region-instruction records (all five trained tasks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rgpt_model.data import templates
from rgpt_model.data.attributes import SHAPES
from rgpt_model.data.jsonl_format import make_record
from rgpt_model.data.scene import ReferringExpression, Scene
from rgpt_model.data.synthetic import _SPLIT_CODE

SYNTHETIC_TASKS: tuple[str, ...] = (
    "classify",
    "caption_brief",
    "caption_detail",
    "refer",
    "short_answer",
)


@dataclass
class RecordConfig:
    """Which records to write per scene."""

    tasks: tuple[str, ...] = SYNTHETIC_TASKS
    refer_per_scene: int = 4  # positive REC records per scene
    negatives_per_scene: int = 1  # REC records whose answer is "No corresponding options found."


def _rng(scene: Scene) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([scene.seed, _SPLIT_CODE[scene.split], scene.index, 1])
    )


def _pick(
    items: list[ReferringExpression], rng: np.random.Generator, k: int
) -> list[ReferringExpression]:
    """Up to ``k`` expressions, kinds balanced: draw a kind uniformly, then one of its phrases.

    Attribute phrases outnumber relations and superlatives several times over; sampling
    by kind keeps the spatial expressions well represented.
    """
    pools: dict[str, list[ReferringExpression]] = {}
    for e in items:
        pools.setdefault(e.kind, []).append(e)
    out: list[ReferringExpression] = []
    while len(out) < k and pools:
        kinds = sorted(pools)
        kind = kinds[int(rng.integers(len(kinds)))]
        pool = pools[kind]
        out.append(pool.pop(int(rng.integers(len(pool)))))
        if not pool:
            del pools[kind]
    return out


def scene_to_records(
    scene: Scene, image_path: str, label_path: str, config: RecordConfig | None = None
) -> list[dict]:
    """Records for one scene; paths are stored as given (relative to the JSONL folder)."""
    cfg = config or RecordConfig()
    rng = _rng(scene)
    masks = {"type": "label_png", "path": label_path}
    base = f"{scene.split}-{scene.index:06d}"
    out: list[dict] = []

    def add(
        task: str, suffix: str, region_ids: list[int], human: str, answer: str, meta: dict
    ) -> None:
        out.append(
            make_record(
                f"{base}-{suffix}",
                image_path,
                masks,
                region_ids,
                task,
                human,
                answer,
                {"split": scene.split, "scene": scene.index, **meta},
            )
        )

    for r in scene.regions:
        if "classify" in cfg.tasks:
            add(
                "classify",
                f"cls-{r.id}",
                [r.id],
                templates.classify_prompt(1, vocabulary=SHAPES),
                r.shape,
                {"label": r.shape},
            )
        if "caption_brief" in cfg.tasks:
            add(
                "caption_brief",
                f"brief-{r.id}",
                [r.id],
                templates.brief_caption_prompt(1),
                r.brief_caption,
                {},
            )
        if "caption_detail" in cfg.tasks:
            add(
                "caption_detail",
                f"detail-{r.id}",
                [r.id],
                templates.detail_caption_prompt(1),
                r.detail_caption,
                {},
            )
        if "short_answer" in cfg.tasks:
            attr = ("colour", "size")[int(rng.integers(2))]
            q = f"What {attr} is the object at <region1>?"
            add(
                "short_answer",
                f"short-{r.id}",
                [r.id],
                templates.short_answer_prompt(q),
                getattr(r, attr),
                {"attribute": attr},
            )
    if "refer" in cfg.tasks:
        pos = [e for e in scene.expressions if e.target_ids]
        neg = [e for e in scene.expressions if not e.target_ids]
        chosen = _pick(pos, rng, cfg.refer_per_scene) + _pick(neg, rng, cfg.negatives_per_scene)
        for k, e in enumerate(chosen):
            order = [scene.regions[int(i)].id for i in rng.permutation(len(scene.regions))]
            answer_idx = [order.index(t) + 1 for t in e.target_ids]
            add(
                "refer",
                f"ref-{k}",
                order,
                templates.refer_prompt(len(order), e.text),
                templates.refer_answer(answer_idx),
                {"expression": e.text, "kind": e.kind, "target_ids": e.target_ids},
            )
    return out
