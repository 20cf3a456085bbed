"""bf16 mixed precision and gradient checkpointing: that they really run, and what they do to
the numbers (checkpointing: nothing; bf16: a little, with the tolerances stated below), also
under FSDP on two processes with a frozen-LLM stage followed by a LoRA stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rgpt_model.build import load_predictor
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.training.config import config_from_dict, load_config
from rgpt_model.training.trainer import Trainer

from . import distributed_runs as runs
from .conftest import tiny_run_dict

# bf16 rounds to 8 significant bits (relative 2^-9 = 0.2 %); the loss averages such roundings
# over thousands of products and hundreds of answer tokens: measured 2e-5 to 8e-5 relative on
# the first 3 steps. 1e-3 leaves a 10x margin and still fails when a bf16 step goes wrong.
BF16_LOSS_RTOL = 1e-3


def _trainer(tmp_path, name: str, steps: int = 3, **extra) -> Trainer:
    d = tiny_run_dict(tmp_path, steps, **extra)
    d["output_dir"] = str(tmp_path / name)
    return Trainer(config_from_dict(d), progress=False)


def _layers(trainer: Trainer, class_name: str) -> list[torch.nn.Module]:
    return [m for m in trainer.model.modules() if type(m).__name__ == class_name]


def test_bf16_runs_the_layers_in_bf16_and_stays_close_to_fp32(tmp_path):
    fp32 = _trainer(tmp_path, "fp32")
    fp32.train()
    bf16 = _trainer(tmp_path, "bf16", precision="bf16")
    seen: set[torch.dtype] = set()
    for name in ("q_proj", "fc1"):  # a LLaMA attention and a CLIP MLP projection
        layer = next(m for n, m in bf16.model.named_modules() if n.endswith(name))
        layer.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
    bf16.train()
    assert seen == {torch.bfloat16}
    assert {p.dtype for p in bf16.model.parameters()} == {torch.float32}  # master weights
    want, got = [h["loss"] for h in fp32.history], [h["loss"] for h in bf16.history]
    assert got == pytest.approx(want, rel=BF16_LOSS_RTOL)
    assert got != want  # the bf16 run did round


def _counting(forward, calls: dict[str, int], key: str):
    def counted(*args, **kwargs):
        calls[key] += 1
        return forward(*args, **kwargs)

    return counted


def test_gradient_checkpointing_recomputes_each_layer_and_keeps_the_losses(tmp_path):
    runs = {}
    for on in (False, True):
        trainer = _trainer(tmp_path, f"ckpt_{on}", steps=2, gradient_checkpointing=on)
        calls = {"LlamaDecoderLayer": 0, "CLIPEncoderLayer": 0}
        for cls in calls:  # counted in forward itself: hooks do not run when recomputing
            mlp = _layers(trainer, cls)[0].mlp
            mlp.forward = _counting(mlp.forward, calls, cls)
        trainer.train()
        runs[on] = ([h["loss"] for h in trainer.history], calls)
    assert runs[True][0] == runs[False][0]  # recomputation is exact
    assert runs[False][1] == {"LlamaDecoderLayer": 2, "CLIPEncoderLayer": 2}  # one per step
    assert runs[True][1] == {"LlamaDecoderLayer": 4, "CLIPEncoderLayer": 4}  # and again


# FSDP with bf16 gathers every parameter as a bf16 copy (norm weights, embeddings and biases
# too), where autocast in one process keeps those in float32 and rounds only the inputs of
# matrix products: the two differ by bf16 roundings of some weights (measured: losses 1e-4
# relative apart). The same BF16_LOSS_RTOL holds. The weight updates (LoRA merged) differ by
# 7 % of their size after 4 steps (measured), as Adam turns small gradient differences into
# whole steps for near-zero gradients; 20 % is the limit (a wrong reduction gives ~100 %).
FSDP_BF16 = {
    "precision": "bf16", "gradient_checkpointing": True, "grad_accum": 2,
    "stages": [{"name": "stage1", "steps": 2, "lr": 0.003, "warmup_steps": 1,
                "train": ["refiner", "connector"]},
               {"name": "stage2_lora", "steps": 2, "lr": 0.003, "warmup_steps": 1,
                "train": ["connector", "lm"], "lm_mode": "lora"}],
}


def _update_disagreement(start: dict[str, torch.Tensor], want: dict[str, torch.Tensor],
                         got: dict[str, torch.Tensor]) -> float:
    """|got - want| / |want - start| over all weights: how far two runs' updates differ,
    relative to the update. Element-wise limits do not fit bf16 runs: Adam scales each
    element's step to about lr, so an element whose gradient is near zero moves by up to lr
    per step in a direction that rounding decides."""
    assert sorted(want) == sorted(got)
    apart = sum(float((got[k] - want[k]).norm() ** 2) for k in want) ** 0.5
    moved = sum(float((want[k] - start[k]).norm() ** 2) for k in want) ** 0.5
    assert moved > 0
    return apart / moved


def test_fsdp_bf16_with_checkpointing_and_a_lora_stage_matches_one_process(tmp_path):
    """Stage 1 freezes the LLM, stage 2 trains LoRA layers inside FSDP-sharded decoder layers
    (FSDP must re-read which parameters train: parallel.refresh_fsdp_after_freezing)."""
    config = runs.write_config(tmp_path, "fsdp", **FSDP_BF16, strategy="fsdp")
    runs.check(runs.torchrun(config))
    single = Trainer(load_config(config, ["strategy=single",
                                          f"output_dir={tmp_path / 'single'}"]),
                     progress=False)
    start = {k: v.detach().clone() for k, v in single.model.state_dict().items()}
    single.train()
    assert runs.logged_losses(tmp_path / "fsdp") == pytest.approx(
        [h["loss"] for h in single.history], rel=BF16_LOSS_RTOL)
    fsdp_export = runs.exported_weights(tmp_path / "fsdp" / "final")
    assert not any("lora" in k for k in fsdp_export)  # merged into the LLM's weights
    assert _update_disagreement(start, runs.exported_weights(single.export()), fsdp_export) < 0.2
    predictor = load_predictor(tmp_path / "fsdp" / "final", device="cpu")
    scene = generate_scene(0, 5, "val", SceneConfig(height=64, width=64))
    masks = np.stack([scene.labels == r.id for r in scene.regions])
    described = predictor.describe(scene.image, masks, tasks=("classify",))
    assert len(described) == len(scene.regions)
    assert all(d.label in predictor.model.config.label_vocabulary for d in described)
