"""A ``state.pt`` written in the layout before the region encoder (pre-issue-18 runs and the
issue-20 branch's run: top-level ``vision_tower.*`` ... ``pixel_branch.*``, the optimizer's
parameters in that layout's order) resumes exactly as the same checkpoint in the current
layout. (The check against the issue-20 branch's own code: docs/TRAINING.md, "Resuming an
issue-20 branch run".)"""

import torch

from rgpt_model.modeling import LEGACY_REGION_ENCODER_PARTS
from rgpt_model.training import checkpointing as ckpt
from rgpt_model.training.config import config_from_dict
from rgpt_model.training.trainer import Trainer

from .conftest import tiny_run_dict

# the order the old layout created its modules in (written out here, independently of
# checkpointing.LEGACY_PARAMETER_ORDER)
OLD_MODULES = ["vision_tower", "refiner", "mask_encoder", "connector", "language_model",
               "mask_position", "pixel_branch"]


def _run(tmp_path, name):
    d = tiny_run_dict(tmp_path, steps=6, aux_losses={"region_attributes": 0.2})
    d["output_dir"] = str(tmp_path / name)
    d["model"].update({"mask_position": True, "pixel_branch": True})
    d["data"]["mask_variants"] = {"exact": 1.0, "box": 1.0}
    # a stage where the orders differ: the connector came before the position encoder
    d["stages"][0].update({"train": ["refiner", "position", "connector"], "max_turns": 2,
                           "aux_losses": {"dense_region_attributes": 0.5}})
    return config_from_dict(d)


def _to_legacy(state: dict, trainer: Trainer) -> dict:
    """``state`` (current layout) as the old trainer would have written it."""
    names = {id(p): n.removeprefix("region_encoder.")
             for n, p in trainer.model.named_parameters()}
    current = state["optimizer"]
    groups, moments, offset = [], {}, 0
    for saved, live in zip(current["param_groups"], trainer.optimizer.param_groups,
                           strict=True):
        params = live["params"]
        old_order = [p for module in OLD_MODULES for p in params
                     if id(p) in names and names[id(p)].split(".")[0] == module]
        old_order += [p for p in params if id(p) not in names]  # aux heads last, as now
        old_index = {id(p): i for i, p in enumerate(old_order)}
        for k, p in enumerate(params):
            if saved["params"][k] in current["state"]:
                moments[offset + old_index[id(p)]] = current["state"][saved["params"][k]]
        groups.append({**saved, "params": list(range(offset, offset + len(params)))})
        offset += len(params)
    model = {k.removeprefix("region_encoder."): v for k, v in state["model"].items()}
    assert {k.split(".")[0] for k in model} >= set(LEGACY_REGION_ENCODER_PARTS) - {"mask_encoder"}
    return {**state, "model": model, "optimizer": {"state": moments, "param_groups": groups}}


def test_a_legacy_state_resumes_as_the_current_one(tmp_path):
    first = Trainer(_run(tmp_path, "a"), progress=False)
    first.train(stop_at=2)
    path = tmp_path / "a" / ckpt.CHECKPOINT_DIR
    legacy_dir = tmp_path / "b" / ckpt.CHECKPOINT_DIR
    legacy_dir.mkdir(parents=True)
    for f in path.iterdir():
        (legacy_dir / f.name).write_bytes(f.read_bytes())
    state = torch.load(path / ckpt.SINGLE_STATE, weights_only=False)
    torch.save(_to_legacy(state, first), legacy_dir / ckpt.SINGLE_STATE)
    resumed = {}
    for name in ("a", "b"):
        trainer = Trainer(_run(tmp_path, name), progress=False)
        trainer.train(resume=True, stop_at=3, checkpoint_at_end=False)
        resumed[name] = trainer
    a, b = resumed["a"], resumed["b"]
    assert a.history[-1]["step"] == b.history[-1]["step"] == 3
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(),
                                  strict=True):
        assert ka == kb and torch.allclose(va, vb, atol=1e-6, rtol=0), ka
    # without the renumbering the moments would land on parameters of other shapes
    moments = b.optimizer.state_dict()["state"]
    for group in b.optimizer.param_groups:
        for p in group["params"]:
            if p in b.optimizer.state:
                assert b.optimizer.state[p]["exp_avg"].shape == p.shape
    assert moments
