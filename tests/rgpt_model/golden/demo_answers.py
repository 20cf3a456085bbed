"""Answers of the committed demo models on fixed inputs, recorded before a refactor.

``python -m tests.rgpt_model.golden.demo_answers FOLDER`` rewrites one model's recording
(``GOLDEN_FILES``: ``demo_model_v1``, recorded before issue 18's refactor, and ``demo_model``,
recorded when it became the default in issue 20); run it only when that model itself changes
(new weights), never to make a refactor pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# model folder name (beside rgpt_model/demo.py) -> its recording
GOLDEN_FILES = {"demo_model_v1": Path(__file__).with_name("demo_answers.json"),
                "demo_model": Path(__file__).with_name("demo_answers_v2.json")}
SCENES = (500, 501, 502, 503, 504, 505)


def compute_answers(predictor) -> dict:
    """describe / refer / ask on six held-out test scenes and one box-mask frame."""
    from rgpt_model.data.synthetic import generate_scene
    from rgpt_model.masks import boxes_to_masks

    out: dict = {"scenes": []}
    for index in SCENES:
        scene = generate_scene(0, index, "test")
        descs = predictor.describe(scene.image, scene.labels,
                                   tasks=("classify", "caption", "detailed_caption"))
        refers = [predictor.refer(scene.image, scene.labels, e.text).to_dict()
                  for e in scene.expressions[:6]]
        answer = predictor.ask(scene.image, scene.labels, "What colour is <region1>?")
        boxes = [r.bbox for r in scene.regions]
        box_masks = boxes_to_masks(boxes, scene.labels.shape)
        box_descs = predictor.describe(scene.image, box_masks, tasks=("classify",))
        out["scenes"].append({
            "index": index,
            "describe": [d.to_dict() for d in descs],
            "refer": refers,
            "expressions": [e.text for e in scene.expressions[:6]],
            "ask": answer,
            "describe_boxes": [d.to_dict() for d in box_descs],
        })
    return json.loads(json.dumps(out, default=lambda o: np.asarray(o).tolist()))


def main(argv: list[str] | None = None) -> None:
    import argparse

    import torch

    from rgpt_model.demo import DEMO_MODEL_DIR
    from rgpt_model.predictor import RGPTPredictor

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folder", choices=sorted(GOLDEN_FILES),
                    help="the model whose recording to rewrite (under rgpt_model/)")
    folder = ap.parse_args(argv).folder
    torch.set_num_threads(1)
    predictor = RGPTPredictor.from_pretrained(DEMO_MODEL_DIR.parent / folder)
    GOLDEN_FILES[folder].write_text(json.dumps(compute_answers(predictor), indent=1) + "\n")
    print(f"wrote {GOLDEN_FILES[folder]}")


if __name__ == "__main__":
    main()
