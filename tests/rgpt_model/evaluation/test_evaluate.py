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
from rgpt_model.evaluation.conditions import CONDITION_NAMES, CONDITIONS, scene_config

CFG = SceneConfig(height=64, width=64)
EVAL_CFG = scene_config(CONDITIONS["exact"], CFG)[0]  # what the evaluation draws from CFG


class OraclePredictor:
    """Answers from the generator's ground truth, read from the masks alone: it finds the
    scene and region each mask covers, whatever the image (so it reads outlines, the failure
    the flat-grey control exists to catch)."""

    def __init__(self, scenes):
        self.scenes = scenes
        # targets by text, also of the plain generator's phrases (the issue-4 REC sample)
        self.targets = [{e.text: e.target_ids for e in generate_scene(0, s.index, "test", CFG)
                         .expressions + s.expressions} for s in scenes]

    def _scene(self, masks):
        m = np.asarray(masks, bool)
        fits = [s for s in self.scenes if s.labels.shape == m.shape[1:]]
        return max(fits, key=lambda s: sum(int((s.labels[k] > 0).sum()) for k in m))

    def _region(self, scene, mask):
        ids, counts = np.unique(scene.labels[mask & (scene.labels > 0)], return_counts=True)
        return scene.region(int(ids[np.argmax(counts)]))

    def encode(self, image, masks):
        """The "encoded frame": just the masks (the oracle never looks at the image)."""
        m = np.asarray(masks, bool)
        return SimpleNamespace(masks=m, region_ids=list(range(1, len(m) + 1)))

    def describe(self, frame, *, tasks, vocabulary=None, max_new_tokens=32):
        scene = self._scene(frame.masks)
        out = []
        for m in frame.masks:
            r = self._region(scene, m)
            cap = r.brief_caption if "caption" in tasks else r.detail_caption
            out.append(SimpleNamespace(label=r.shape, label_score=1.0, caption=cap))
        return out

    def class_scores(self, frame, vocabulary):
        scene = self._scene(frame.masks)
        return np.stack([np.eye(len(vocabulary))[vocabulary.index(self._region(scene, m).shape)]
                         for m in frame.masks])

    def refer(self, frame, expression, region_ids):
        scene = self._scene(frame.masks)
        target = self.targets[next(k for k, x in enumerate(self.scenes) if x is scene)][expression]
        return SimpleNamespace(matched_ids=[
            i for i in region_ids if self._region(scene, frame.masks[i - 1]).id in target])


def test_oracle_scores_perfect_and_shuffle_follows_masks():
    scenes = [generate_scene(0, i, "test", EVAL_CFG) for i in range(4)]
    rep = ev.evaluate_synthetic(OraclePredictor(scenes), "test", 4, scene_config=CFG,
                                meteor=False, progress=False)
    assert rep["num_regions"] == sum(len(s.regions) for s in scenes)
    c = rep["classification"]
    assert c["accuracy"] == 1.0 and c["mAP"] == pytest.approx(1.0)
    assert c["accuracy_held_out_pairs"] == 1.0
    assert c["accuracy_ci95"][1] == 1.0 and c["accuracy_ci95"][0] < 1.0
    assert rep["rec"]["accuracy"] == 1.0 and rep["rec"]["num_none"] >= 1
    assert rep["rec_by_kind"] and all(f["value"] == 1.0 for f in rep["rec_by_kind"].values())
    assert rep["id_permutation"]["changed"]["value"] == 0.0  # it follows the masks, not ids
    asked = sum(f["num"] for f in rep["rec_by_kind"].values())
    assert rep["id_permutation"]["changed"]["num"] == asked > rep["rec"]["num"]
    assert rep["brief_caption"]["colour_and_shape_accuracy"] == 1.0
    assert rep["brief_caption"]["CIDEr"] > 1.0
    sh = rep["mask_shuffle"]
    assert sh["accuracy_vs_shuffled_mask"] == 1.0  # the oracle follows the masks
    assert sh["accuracy"] == pytest.approx(sh["same_shape_rate"])
    assert "conditions" not in rep and "classification_flat_grey" not in rep["targets"]
    json.dumps(rep)  # serialisable


def test_flat_grey_control_catches_a_model_that_reads_outlines():
    scenes = [generate_scene(0, i, "test", EVAL_CFG) for i in range(4)]
    rep = ev.evaluate_synthetic(OraclePredictor(scenes), "test", 4, scene_config=CFG,
                                meteor=False, progress=False, detailed=False,
                                conditions=["flat_grey", "box", "coarse"])
    assert list(rep["conditions"]) == ["exact", "flat_grey", "box", "coarse"]
    grey = rep["conditions"]["flat_grey"]
    assert grey["image"] == "flat grey" and grey["rec"] is None
    assert grey["classification"]["accuracy"]["value"] == 1.0
    t = rep["targets"]
    assert not t["classification_flat_grey"]["met"] and t["classification_exact"]["met"]
    assert not t["all_met"]
    # the majority label under a box or a coarse mask is still the region's own
    assert rep["conditions"]["box"]["classification"]["accuracy"]["value"] >= 0.9
    kinds = rep["conditions"]["coarse"]["classification"]["by_mask_kind"]
    assert set(kinds) == {"dilate", "erode", "jitter", "hull"}  # scenes 0-3 take kinds 0-3
    # conditions not evaluated are listed as not measured, never as met
    assert t["classification_rotation"]["value"] is None and not t["classification_rotation"]["met"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from rgpt_model.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("m") / "tiny", vocabulary=SHAPES)


def test_tiny_model_report_has_every_section(tiny_model, tmp_path, capsys):
    out = tmp_path / "r.json"
    ev.main(["--model", str(tiny_model), "--num-scenes", "1", "--no-meteor", "--no-progress",
             "--no-detailed", "--conditions", "all", "--out", str(out)])
    rep = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == rep
    assert 0.0 <= rep["classification"]["accuracy"] <= 1.0
    assert {"accuracy", "accuracy_ci95", "none_accuracy", "by_kind",
            "by_spatial_word"} <= set(rep["rec"])
    assert rep["detailed_caption"] is None
    assert {"rec_by_kind", "id_permutation", "label_score", "mask_shuffle",
            "brief_caption", "conditions", "targets"} <= set(rep)
    assert list(rep["conditions"]) == list(CONDITION_NAMES)
    for name, sec in rep["conditions"].items():
        assert sec["num_scenes"] == 1 and sec["num_regions"] >= 2, name
        assert sec["missing_knobs"] == [], name  # the generator has every knob a condition sets
        fig = sec["classification"]["accuracy"]
        assert 0.0 <= fig["ci95"][0] <= fig["value"] <= fig["ci95"][1] <= 1.0, name
        assert (sec["rec"] is None) == (name == "flat_grey"), name
    assert rep["conditions"]["frame_640x480"]["scene_config"]["width"] == 640
    t = rep["targets"]
    assert {"classification_flat_grey", "classification_box", "classification_coarse",
            "classification_robust_combined", "caption_size_frame_320x240", "rec_overall",
            "rec_relation_unique_subject", "rec_absent_near_miss", "id_permutation_changed",
            "label_score_auroc", "mask_shuffle_near_chance", "all_met"} <= set(t)
    assert all("met_with_confidence" in v for k, v in t.items()
               if isinstance(v, dict) and "ci95" in v)


def test_cli_help_lists_conditions_and_defaults(capsys):
    with pytest.raises(SystemExit):
        ev.main(["--help"])
    text = capsys.readouterr().out
    assert "--conditions" in text and "(default: all)" in text and "robust_combined" in text
    assert "--rec-per-kind" in text and "(default: 2)" in text
    with pytest.raises(SystemExit, match="unknown condition"):
        ev.main(["--conditions", "exact,greyish"])


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
