"""Trainer: micro training (loss falls, beats chance), determinism, resume, export, stages."""

import numpy as np
import pytest
import torch

from rgpt_model.data.attributes import COLOURS
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.predictor import RGPTPredictor
from rgpt_model.training import train as train_cli
from rgpt_model.training.samples import (
    IGNORE_INDEX,
    Conversation,
    Turn,
    collate,
    encode_conversation,
    short_question,
)
from rgpt_model.training.trainer import Trainer


def _colour_accuracy(trainer: Trainer, scenes) -> float:
    """Next-token accuracy of the colour answer, one single-turn prompt per region."""
    p, m = trainer.processor, trainer.model.eval()
    tok = p.tokenizer
    colour_ids = [tok(" " + c, add_special_tokens=False)["input_ids"][0] for c in COLOURS]
    hits = total = 0
    for scene in scenes:
        masks = np.stack([scene.labels == r.id for r in scene.regions])
        pv, tf = p.preprocess_image(scene.image)
        mt = p.preprocess_masks(masks, tf)
        for k, r in enumerate(scene.regions):
            conv = Conversation(scene.image, masks, [Turn(short_question("colour"), r.colour, [k])])
            enc = encode_conversation(conv, tok, p.image_token_id, p.num_global_tokens,
                                      set(m.config.region_token_ids), with_system_prompt=False)
            batch = collate([enc], [pv[0]], [mt], tok.pad_token_id)
            batch.pop("labels")
            with torch.no_grad():
                logits = m(**batch).logits[0]
            pos = next(j for j, lab in enumerate(enc.labels) if lab != IGNORE_INDEX) - 1
            pred = int(torch.stack([logits[pos, c] for c in colour_ids]).argmax())
            hits += list(COLOURS)[pred] == r.colour
            total += 1
    return hits / total


def test_micro_training_loss_falls_and_beats_chance(tiny_run):
    """~30 s on one CPU thread: colour questions about 1-3 objects, short prompts."""
    cfg = tiny_run(steps=500)
    cfg.data.task_weights = {"short_answer": 1.0}
    cfg.data.max_turns = 2
    cfg.data.with_system_prompt = False
    cfg.data.min_objects, cfg.data.max_objects = 1, 3
    trainer = Trainer(cfg, progress=False)
    summary = trainer.train()
    losses = [h["loss"] for h in trainer.history]
    assert summary["steps"] == 500
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:5])
    scenes = [generate_scene(0, i, "val", SceneConfig(height=64, width=64, min_objects=1,
                                                       max_objects=3)) for i in range(12)]
    acc = _colour_accuracy(trainer, scenes)
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
