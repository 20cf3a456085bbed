"""Per-stage data overrides: the REC curriculum of the demo model relies on them."""

import re

import numpy as np
import pytest

from rgpt_model import prompts
from rgpt_model.data.attributes import seen_pairs
from rgpt_model.data.expressions import near_miss_expressions
from rgpt_model.data.synthetic import generate_scene
from rgpt_model.modeling import RGPTForCausalLM
from rgpt_model.training.config import config_from_dict
from rgpt_model.training.conversation_source import ConversationSource
from rgpt_model.training.samples import scene_turns
from rgpt_model.training.trainer import Trainer

from .conftest import tiny_run_dict

FEW_OBJECTS_REC = {"name": "rec_few", "steps": 2, "max_objects": 2, "max_turns": 3,
                   "task_weights": {"rec": 1.0}}


def test_stage_overrides_scene_size_turns_and_tasks(tmp_path):
    d = tiny_run_dict(tmp_path)
    d["data"]["min_objects"] = 2
    d["data"]["max_objects"] = 6
    d["stages"] = [FEW_OBJECTS_REC, {"name": "all", "steps": 2}]
    cfg = config_from_dict(d)
    source = ConversationSource(cfg)
    few, full = cfg.stages
    for step in range(6):
        convs = source.batch(step, 0, few)
        assert len(convs) == cfg.images_per_step
        for conv in convs:
            assert conv.masks.shape[0] == 2
            assert 1 <= len(conv.turns) <= 3
            assert {t.task for t in conv.turns} == {"rec"}
    default = [c for step in range(6) for c in source.batch(step, 0, full)]
    assert max(c.masks.shape[0] for c in default) > 2
    assert max(len(c.turns) for c in default) == cfg.data.max_turns
    assert len({t.task for c in default for t in c.turns}) > 1


def test_trainer_batches_follow_the_stage_of_the_step(tmp_path):
    d = tiny_run_dict(tmp_path)
    d["stages"] = [FEW_OBJECTS_REC, {"name": "all", "steps": 2}]
    trainer = Trainer(config_from_dict(d), progress=False)
    batch, n_turns = trainer.make_batch(0, 0)  # stage rec_few
    assert batch["masks"].shape[0] == 2 * batch["pixel_values"].shape[0]
    assert n_turns <= 3 * batch["pixel_values"].shape[0]
    summary = trainer.train()
    assert summary["steps"] == 4


def test_stage_max_objects_below_min_objects_is_an_error(tmp_path):
    d = tiny_run_dict(tmp_path)
    d["data"]["min_objects"] = 3
    d["stages"] = [{"name": "s", "steps": 1, "max_objects": 2}]
    with pytest.raises(ValueError, match="max_objects 2 is below data.min_objects 3"):
        config_from_dict(d)


@pytest.mark.parametrize("name", ["region_identity_scale", "mask_position_scale"])
def test_stage_scale_applies_from_its_stage_on_and_is_exported(tmp_path, name):
    d = tiny_run_dict(tmp_path)
    d["model"].update({"region_placeholder_identity": True, "mask_position": True,
                       "region_identity_scale": 1.0, "mask_position_scale": 1.0})
    d["stages"] = [{"name": "a", "steps": 2},
                   {"name": "b", "steps": 2, name: 7.0},
                   {"name": "c", "steps": 1}]
    trainer = Trainer(config_from_dict(d), progress=False)
    trainer.train(stop_at=1)
    assert getattr(trainer.model.config, name) == 1.0  # stage a: the model spec's
    trainer.train()
    assert getattr(trainer.model.config, name) == 7.0  # stage c keeps stage b's
    if name == "mask_position_scale":
        assert trainer.model.mask_position.scale == 7.0  # the module's gain follows
    exported = RGPTForCausalLM.from_pretrained(trainer.export())
    assert getattr(exported.config, name) == 7.0
    assert exported.mask_position.scale == exported.config.mask_position_scale
    resumed = Trainer(config_from_dict(d), progress=False)
    resumed.load_checkpoint()  # resumes at the end of stage c
    assert getattr(resumed.model.config, name) == 7.0


def test_schedule_steps_keep_the_learning_rates_of_a_stage_stopped_early(tmp_path):
    def lrs(stages: list[dict]) -> list[float]:
        d = tiny_run_dict(tmp_path)
        d["stages"] = stages
        trainer = Trainer(config_from_dict(d), progress=False)
        return [trainer.lr_at(k) for k in range(12)]

    planned = lrs([{"name": "a", "steps": 20, "warmup_steps": 2}])
    stopped = lrs([{"name": "a", "steps": 8, "schedule_steps": 20, "warmup_steps": 2},
                   {"name": "b", "steps": 4, "warmup_steps": 2}])
    assert stopped[:8] == planned[:8]  # the cut stage ran at the 20-step schedule's rates
    assert stopped[8] < planned[8]  # the next stage warms up from its own start
    assert lrs([{"name": "a", "steps": 8, "warmup_steps": 2}])[7] < planned[7]  # without it


def test_stage_negative_rec_fraction_sets_the_share_of_none_answers(tmp_path):
    d = tiny_run_dict(tmp_path)
    d["stages"] = [{"name": s, "steps": 1, "task_weights": {"rec": 1.0},
                    "negative_rec_fraction": f} for s, f in (("all", 1.0), ("no", 0.0))]
    cfg = config_from_dict(d)
    source = ConversationSource(cfg)

    def none_share(stage) -> float:
        answers = [t.answer for step in range(4) for c in source.batch(step, 0, stage)
                   for t in c.turns]
        return sum(a == prompts.NO_MATCH_ANSWER for a in answers) / len(answers)

    always, never = cfg.stages
    assert none_share(always) == 1.0  # every scene has an absent expression to ask
    assert none_share(never) == 0.0


def test_near_miss_fraction_asks_for_phrases_one_attribute_from_an_object():
    scene = generate_scene(0, 3, "train")
    near = {e.text for e in near_miss_expressions(scene.regions, seen_pairs())}
    scene_negatives = {e.text for e in scene.expressions if not e.target_ids}

    def asked(fraction: float) -> list[str]:
        turns = scene_turns(scene, np.random.default_rng(0), {"rec": 1.0}, max_turns=40,
                            negative_fraction=1.0, near_miss_fraction=fraction)
        assert all(t.answer == prompts.NO_MATCH_ANSWER for t in turns)
        return [re.search(r"'(.*)'", t.question).group(1) for t in turns]

    assert set(asked(1.0)) <= near and len(set(asked(1.0))) > 5
    assert set(asked(0.0)) <= scene_negatives


@pytest.mark.parametrize(("key", "value", "message"), [
    ("negative_rec_fraction", 1.5, "negative_rec_fraction must be in"),
    ("near_miss_rec_fraction", -0.1, "near_miss_rec_fraction must be in"),
    ("region_identity_scale", 0, "region_identity_scale must be > 0"),
    ("schedule_steps", 0, "schedule_steps \\(0\\) must be at least steps"),
    ("mask_position_scale", 2.0, "mask_position_scale needs a model with a mask position"),
    ("aux_losses", {"region_attributes": -1.0}, "aux loss weights must be >= 0"),
    ("augmentations", {"grey_repaint": 1.5}, "probabilities must be in \\[0, 1\\]"),
])
def test_bad_stage_rec_settings_are_errors(tmp_path, key, value, message):
    d = tiny_run_dict(tmp_path)
    d["stages"] = [{"name": "s", "steps": 1, key: value}]
    with pytest.raises(ValueError, match=message):
        config_from_dict(d)


def test_rec_kind_weights_choose_the_kind_of_positive_expressions():
    scene = next(s for s in (generate_scene(0, i, "train") for i in range(20))
                 if {e.kind for e in s.expressions} >= {"attribute", "relation"})
    by_text = {e.text: e.kind for e in scene.expressions}

    def kinds(weights) -> set[str]:
        turns = scene_turns(scene, np.random.default_rng(0), {"rec": 1.0}, max_turns=40,
                            negative_fraction=0.0, rec_kind_weights=weights)
        return {kind for t in turns for text, kind in by_text.items()
                if f'"{text}"' in t.question or f"'{text}'" in t.question}

    assert kinds({"relation": 1.0}) == {"relation"}
    assert kinds({"attribute": 1.0, "superlative": 0.0}) == {"attribute"}
    assert len(kinds(None)) > 1


def test_negative_kind_weights_choose_the_kind_of_none_phrases():
    scene = next(s for s in (generate_scene(0, i, "train") for i in range(40))
                 if {e.kind for e in s.expressions} >= {"absent", "absent_relation"})
    by_text = {e.text: e.kind for e in scene.expressions if not e.target_ids}

    def kinds(weights) -> set[str]:
        turns = scene_turns(scene, np.random.default_rng(0), {"rec": 1.0}, max_turns=40,
                            negative_fraction=1.0, negative_kind_weights=weights)
        assert all(t.answer == prompts.NO_MATCH_ANSWER for t in turns)
        return {by_text[re.search(r"'(.*)'", t.question).group(1)] for t in turns}

    assert kinds({"absent_relation": 1.0}) == {"absent_relation"}
    assert kinds({"absent": 1.0, "absent_relation": 0.0}) == {"absent"}
    assert kinds(None) == {"absent", "absent_relation"}


@pytest.mark.parametrize("key", ["rec_kind_weights", "negative_kind_weights"])
def test_bad_rec_kind_weights_are_errors(tmp_path, key):
    d = tiny_run_dict(tmp_path)
    kind = "relation" if key == "rec_kind_weights" else "absent"
    for weights in ({"colour": 1.0}, {kind: -1.0}, {kind: 0.0}):
        d["stages"] = [{"name": "s", "steps": 1, key: weights}]
        with pytest.raises(ValueError, match=f"{key} needs non-negative weights"):
            config_from_dict(d)
