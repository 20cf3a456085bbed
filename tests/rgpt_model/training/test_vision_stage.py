"""Vision stages: region-attribute heads and grey repaints through the registries, data
workers, mask encoder."""

import torch

from rgpt_model.training.trainer import Trainer


def test_vision_stage_with_workers_grey_views_and_mask_encoder(tiny_run, tmp_path):
    """Same losses with and without a data worker; the mask encoder trains in the vision
    stage (part ``refiner``) and the tower stays as configured."""
    def run(workers: int, out: str) -> Trainer:
        cfg = tiny_run(steps=3, aux_losses={"region_attributes": 1.0}, data_workers=workers,
                       output_dir=str(tmp_path / out))
        cfg.model.mask_encoder = True
        cfg.stages[0].train = ["vision", "refiner"]
        cfg.stages[0].lm_loss = False
        cfg.stages[0].augmentations = {"grey_repaint": 0.5}
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
    stage.augmentations = {"grey_repaint": 1.0}
    grey, _ = trainer.make_batch(0, 0)
    tasks = [c.turns[0].task for c in trainer.batches.source.batch(0, 0, stage)]
    assert set(tasks) == {"classify", "brief_caption"}
    for i, task in enumerate(tasks):
        same = torch.equal(plain["pixel_values"][i], grey["pixel_values"][i])
        assert same == (task != "classify"), (i, task)


def test_resume_restores_the_attribute_heads_also_from_an_older_checkpoint(tiny_run, tmp_path):
    """Checkpoints keep the training-only heads; one written before the aux-loss registry
    kept them under ``aux_heads``."""
    cfg = tiny_run(steps=2, aux_losses={"region_attributes": 1.0})
    trainer = Trainer(cfg, progress=False)
    trainer.train()
    trained = trainer.aux_losses["region_attributes"].state_dict()
    path = tmp_path / "run" / "checkpoint-last" / "state.pt"
    for old_format in (False, True):
        if old_format:
            state = torch.load(path, weights_only=False)
            state["aux_heads"] = state.pop("aux_losses")["region_attributes"]
            torch.save(state, path)
        resumed = Trainer(cfg, progress=False)
        fresh = {k: v.clone() for k, v in resumed.aux_losses["region_attributes"].state_dict()
                 .items()}
        assert resumed.load_checkpoint()
        heads = resumed.aux_losses["region_attributes"].state_dict()
        assert all(torch.equal(heads[k], trained[k]) for k in trained)
        assert not all(torch.equal(fresh[k], trained[k]) for k in trained)
