"""Label accuracy alone on synthetic scenes: the one number a short run is judged by.

:func:`rgpt_model.evaluation.evaluate.evaluate_synthetic` also decodes captions and REC
answers, minutes of decoding for a 30-layer LLM on the CPU; a stage that only teaches the
shape names needs its labels scored, through the same predictor call the node makes.
"""

from __future__ import annotations

import numpy as np

from rgpt_model.data.attributes import SHAPES
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.predictor import RGPTPredictor


def shape_label_accuracy(predictor: RGPTPredictor, num_scenes: int = 20, split: str = "test",
                         seed: int = 0, scene_config: SceneConfig | None = None) -> dict:
    """Share of regions whose ``describe`` label is their shape (chance: 1/8), over the
    regions of ``num_scenes`` generated scenes, with the answers counted per label."""
    scfg = scene_config or SceneConfig()
    right = total = 0
    answers: dict[str, int] = {}
    for i in range(num_scenes):
        scene = generate_scene(seed, i, split, scfg)
        masks = np.stack([scene.labels == r.id for r in scene.regions])
        described = predictor.describe(scene.image, masks, tasks=("classify",),
                                       vocabulary=SHAPES, max_new_tokens=4)
        for region, d in zip(scene.regions, described, strict=True):
            right += d.label == region.shape
            total += 1
            answers[d.label] = answers.get(d.label, 0) + 1
    return {"accuracy": right / max(total, 1), "regions": total, "chance": 1 / len(SHAPES),
            "answers": dict(sorted(answers.items(), key=lambda kv: -kv[1]))}
