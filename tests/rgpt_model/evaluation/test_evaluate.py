"""The evaluation command: an oracle predictor gives perfect scores and a mask-following
shuffle result, a tiny model runs end to end on synthetic scenes and on a JSONL file."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from rgpt_model import prompts
from rgpt_model.data.attributes import SHAPES
from rgpt_model.data.jsonl_format import write_jsonl, write_label_png
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.data.synthetic_records import scene_to_records
from rgpt_model.evaluation import evaluate as ev

CFG = SceneConfig(height=64, width=64)


class OraclePredictor:
    """Answers from the generator's ground truth, always following the given masks."""

    def __init__(self, scenes):
        self.scenes = scenes

    def _scene(self, image):
        return next(s for s in self.scenes if np.array_equal(s.image, image))

    def _region(self, scene, mask):
        ids, counts = np.unique(scene.labels[mask], return_counts=True)
        return scene.region(int(ids[np.argmax(counts)]))

    def describe(self, image, masks, *, tasks, vocabulary=None, max_new_tokens=32):
        scene = self._scene(image)
        out = []
        for m in masks:
            r = self._region(scene, m)
            cap = r.brief_caption if "caption" in tasks else r.detail_caption
            out.append(SimpleNamespace(label=r.shape, caption=cap))
        return out

    def class_scores(self, image, masks, vocabulary):
        scene = self._scene(image)
        return np.stack([np.eye(len(vocabulary))[vocabulary.index(self._region(scene, m).shape)]
                         for m in masks])

    def refer(self, image, labels, expression, region_ids):
        scene = self._scene(image)
        e = next(x for x in scene.expressions if x.text == expression)
        return SimpleNamespace(matched_ids=[i for i in region_ids if i in e.target_ids])


def test_oracle_scores_perfect_and_shuffle_follows_masks():
    scenes = [generate_scene(0, i, "test", CFG) for i in range(4)]
    rep = ev.evaluate_synthetic(OraclePredictor(scenes), "test", 4, scene_config=CFG,
                                meteor=False, progress=False)
    assert rep["num_regions"] == sum(len(s.regions) for s in scenes)
    c = rep["classification"]
    assert c["accuracy"] == 1.0 and c["mAP"] == pytest.approx(1.0)
    assert c["accuracy_held_out_pairs"] == 1.0
    assert rep["rec"]["accuracy"] == 1.0 and rep["rec"]["num_none"] >= 1
    assert rep["brief_caption"]["colour_and_shape_accuracy"] == 1.0
    assert rep["brief_caption"]["CIDEr"] > 1.0
    sh = rep["mask_shuffle"]
    assert sh["accuracy_vs_shuffled_mask"] == 1.0  # the oracle follows the masks
    assert sh["accuracy"] == pytest.approx(sh["same_shape_rate"])
    json.dumps(rep)  # serialisable


def test_derangement_moves_every_region():
    rng = np.random.default_rng(0)
    for n in range(2, 7):
        p = ev._derangement(n, rng)
        assert sorted(p) == list(range(n)) and all(p[i] != i for i in range(n))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from rgpt_model.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("m") / "tiny", vocabulary=SHAPES)


def test_tiny_model_synthetic_and_cli(tiny_model, tmp_path, capsys):
    out = tmp_path / "r.json"
    ev.main(["--model", str(tiny_model), "--num-scenes", "1", "--no-meteor", "--no-progress",
             "--no-detailed", "--out", str(out)])
    rep = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == rep
    assert 0.0 <= rep["classification"]["accuracy"] <= 1.0
    assert {"accuracy", "none_accuracy", "by_kind", "by_spatial_word"} <= set(rep["rec"])
    assert rep["detailed_caption"] is None


def test_jsonl_evaluation(tiny_model, tmp_path):
    scene = generate_scene(0, 0, "val", CFG)
    Image.fromarray(scene.image).save(tmp_path / "img.png")
    write_label_png(tmp_path / "lab.png", scene.labels)
    recs = scene_to_records(scene, "img.png", "lab.png")
    write_jsonl(tmp_path / "d.jsonl", recs)
    rep = ev.evaluate_jsonl(tiny_model, tmp_path / "d.jsonl", meteor=False, progress=False)
    assert rep["num_records"] == len(recs)
    assert {"classify", "refer", "caption_brief", "short_answer"} <= set(rep["tasks"])
    assert rep["tasks"]["refer"]["num"] == sum(r["task"] == "refer" for r in recs)
    assert prompts.NO_MATCH_ANSWER  # parsers used come from rgpt_model.prompts
