"""Trainer: micro training (loss falls, beats chance), determinism, resume, export, stages."""

import numpy as np
import pytest
import torch

from rgpt_model.data.attributes import COLOURS
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.predictor import RGPTPredictor
from rgpt_model.training import train as train_cli
from rgpt_model.training.samples import short_question
from rgpt_model.training.trainer import Trainer


def _colour_accuracy(predictor: RGPTPredictor, scenes) -> float:
    """Teacher-free check: greedy answer to the colour question for every region."""
    hits = total = 0
    for scene in scenes:
        masks = np.stack([scene.labels == r.id for r in scene.regions])
        frame_q = short_question("colour")
        for k, r in enumerate(scene.regions):
            ans = predictor.ask(scene.image, masks[k:k + 1], frame_q, max_new_tokens=3)
            hits += ans.strip().split()[:1] == [r.colour]
            total += 1
    return hits / total


def test_micro_training_loss_falls_and_beats_chance(tiny_run):
    cfg = tiny_run(steps=60, images_per_step=8)
    cfg.data.task_weights = {"short_answer": 1.0}
    trainer = Trainer(cfg, progress=False)
    summary = trainer.train()
    losses = [h["loss"] for h in trainer.history]
    assert summary["steps"] == 60
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    path = trainer.export()
    predictor = RGPTPredictor.from_pretrained(path)
    scenes = [generate_scene(0, i, "val", SceneConfig(height=64, width=64)) for i in range(6)]
    acc = _colour_accuracy(predictor, scenes)
    assert acc > 2.0 / len(COLOURS), acc  # chance is 1/8


def test_seeded_determinism_and_exact_resume(tiny_run, tmp_path):
    a = Trainer(tiny_run(steps=4), progress=False)
    a.train()
    c = Trainer(tiny_run(steps=4, output_dir=str(tmp_path / "c")), progress=False)
    summary = c.train(stop_at=2)  # interrupted after 2 steps, checkpoint written
    assert summary["stopped_early"] and c.step == 2
    c2 = Trainer(tiny_run(steps=4, output_dir=str(tmp_path / "c")), progress=False)
    c2.train(resume=True)
    assert c2.step == 4
    la = [round(h["loss"], 5) for h in a.history]
    lc = [round(h["loss"], 5) for h in c2.history]
    assert la == lc
    for (n, p), (_, q) in zip(a.model.named_parameters(), c2.model.named_parameters(),
                              strict=True):
        assert torch.allclose(p, q, atol=1e-6), n


def test_stage1_freezes_lm_and_stage2_lora(tiny_run):
    cfg = tiny_run(steps=2)
    cfg.stages[0].train = ["refiner", "connector"]
    from rgpt_model.training.config import StageSpec

    cfg.stages.append(StageSpec(name="lora", steps=2, lr=1e-3, lm_mode="lora", warmup_steps=1,
                                train=["connector", "lm"]))
    trainer = Trainer(cfg, progress=False)
    lm_before = {n: p.detach().clone() for n, p in trainer.model.language_model.named_parameters()}
    vis_before = [p.detach().clone() for p in trainer.model.vision_tower.parameters()]
    trainer._enter_stage(0)
    assert not any(p.requires_grad for p in trainer.model.language_model.parameters())
    trainer.train()
    assert trainer.lora_active
    assert all(torch.equal(p, q) for p, q in zip(vis_before,
                                                  trainer.model.vision_tower.parameters(),
                                                  strict=True))
    path = trainer.export()
    merged = RGPTPredictor.from_pretrained(path).model.language_model
    changed = [n for n, p in merged.named_parameters()
               if n in lm_before and not torch.allclose(p, lm_before[n])]
    assert any("q_proj" in n for n in changed)  # LoRA update merged into the weights
    assert not any("embed" in n or "mlp" in n for n in changed)


def test_cli_help_and_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--help"])
    assert e.value.code == 0
    assert "--resume" in capsys.readouterr().out
