"""Vision-stage helpers: grey repaints (shape without colour), data workers, mask encoder."""

import numpy as np
import torch

from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.training.augment import grey_repaint
from rgpt_model.training.samples import scene_conversation
from rgpt_model.training.trainer import AuxHeads, Trainer, shape_only_view


def _scene():
    return generate_scene(0, 3, "train", SceneConfig(height=64, width=64))


def test_grey_repaint_removes_colour_keeps_outlines():
    scene = _scene()
    masks = np.stack([scene.labels == r.id for r in scene.regions])
    out = grey_repaint(scene.image, masks, np.random.default_rng(0), noise_std=0.0)
    assert out.shape == scene.image.shape and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    for m in masks:  # each object one flat grey level: its outline is what is left
        assert len(np.unique(out[m, 0])) == 1
    again = grey_repaint(scene.image, masks, np.random.default_rng(0), noise_std=0.0)
    assert np.array_equal(out, again)


def test_shape_only_view_drops_colour_labels_and_aux_loss_ignores_them():
    conv = scene_conversation(_scene(), np.random.default_rng(0), {"classify": 1.0}, 2)
    grey = shape_only_view(conv, np.random.default_rng(1))
    assert (grey.attributes[:, 1] == -1).all()
    assert (grey.attributes[:, [0, 2]] == conv.attributes[:, [0, 2]]).all()
    assert conv.attributes[:, 1].min() >= 0  # the original is untouched
    heads = AuxHeads(8)
    feats = torch.randn(len(grey.attributes), 8)
    loss = heads.loss(feats, torch.from_numpy(grey.attributes))
    assert torch.isfinite(loss)


def test_vision_stage_with_workers_grey_views_and_mask_encoder(tiny_run, tmp_path):
    """Same losses with and without a data worker; the mask encoder trains in the vision
    stage (part ``refiner``) and the tower stays as configured."""
    def run(workers: int, out: str) -> Trainer:
        cfg = tiny_run(steps=3, aux_loss_weight=1.0, data_workers=workers,
                       output_dir=str(tmp_path / out))
        cfg.model.mask_encoder = True
        cfg.stages[0].train = ["vision", "refiner"]
        cfg.stages[0].lm_loss = False
        cfg.stages[0].grey_fraction = 0.5
        trainer = Trainer(cfg, progress=False)
        trainer.train()
        return trainer

    inline, worker = run(0, "a"), run(1, "b")
    assert [h["loss"] for h in inline.history] == [h["loss"] for h in worker.history]
    enc = inline.model.mask_encoder
    assert enc is not None and torch.count_nonzero(enc.out.weight) > 0  # it learnt


def test_lm_stage_repaints_only_label_conversations(tiny_run):
    """With the LM loss on, a grey repaint would contradict colour words in captions and REC
    expressions: only label (classify) conversations are repainted."""
    cfg = tiny_run(steps=1, images_per_step=12)
    cfg.data.max_turns = 1
    cfg.data.task_weights = {"classify": 0.5, "brief_caption": 0.5}
    trainer = Trainer(cfg, progress=False)
    stage = cfg.stages[0]
    plain, _ = trainer.make_batch(0, 0)
    stage.grey_fraction = 1.0
    grey, _ = trainer.make_batch(0, 0)
    tasks = [c.turns[0].task for c in trainer.source.batch(0, 0, stage)]
    assert set(tasks) == {"classify", "brief_caption"}
    for i, task in enumerate(tasks):
        same = torch.equal(plain["pixel_values"][i], grey["pixel_values"][i])
        assert same == (task != "classify"), (i, task)
