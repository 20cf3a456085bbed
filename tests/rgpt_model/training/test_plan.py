"""The RGPT-7B recipe configs and the planner on them (no weights: the geometry is the
paper's when the checkpoints are not on this machine), and the planner's command line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rgpt_model.training import plan
from rgpt_model.training.config import load_config

CONFIGS = Path(__file__).parents[3] / "rgpt_model" / "configs"
STAGE1, STAGE2 = CONFIGS / "rgpt7b_stage1.yaml", CONFIGS / "rgpt7b_stage2.yaml"
GIB = 1024**3


@pytest.mark.parametrize("path,lr,batch,lm", [(STAGE1, 1e-3, 256, "frozen"),
                                              (STAGE2, 2e-5, 128, "full")])
def test_recipe_configs_hold_the_published_hyperparameters(path, lr, batch, lm):
    cfg = load_config(path)
    (stage,) = cfg.stages
    assert stage.lr == lr and cfg.images_per_step * cfg.grad_accum == batch
    assert plan.lm_mode(stage) == lm
    assert stage.train[:2] == ["refiner", "connector"] and "vision" not in stage.train
    assert cfg.weight_decay == 0 and cfg.min_lr_ratio == 0  # LLaVA-1.5: wd 0, cosine to 0
    assert abs(stage.warmup_steps / stage.steps - 0.03) < 0.001  # warmup ratio 0.03
    assert (cfg.precision, cfg.strategy, cfg.gradient_checkpointing) == ("bf16", "fsdp", True)
    assert cfg.data.source == "annotations" and cfg.data.coco_root is None  # roots: arguments
    # one epoch of the readers' published sizes at the config's global batch
    samples, _ = plan.epoch_samples(cfg, None)
    assert stage.steps == math.ceil(samples / batch)
    text = path.read_text()
    assert text.count("[LLaVA]") >= 8 and "[ours]" in text and "[RGPT]" in text
    with_roots = load_config(path, ["data.coco_root=/datasets/coco",
                                    "model.path=/models/llava-1.5-7b-hf"])
    assert with_roots.data.coco_root == "/datasets/coco"


def test_plan_of_the_7b_recipe_on_8_gpus():
    p1 = plan.make_plan(load_config(STAGE1), gpus=8, strategy="fsdp", precision="bf16")
    p2 = plan.make_plan(load_config(STAGE2), gpus=8, strategy="fsdp", precision="bf16")
    assert "Vicuna-7B" in p1["geometry"]
    params = p1["parameters"]
    assert 6.70e9 < params["lm"] < 6.80e9  # Vicuna-7B + 66 placeholder rows
    assert 300e6 < params["vision"] < 310e6  # CLIP ViT-L/14-336 vision tower
    total = sum(params.values())
    (s1,), (s2,) = p1["stages"], p2["stages"]
    assert s1["trainable_params"] == params["refiner"] + params["connector"]
    assert s2["trainable_params"] == params["refiner"] + params["connector"] + params["lm"]
    # FSDP: float32 weights, gradients and AdamW state divided over the 8 GPUs
    assert s1["memory_gib"]["weights"] == pytest.approx(total * 4 / 8 / GIB, rel=1e-6)
    assert s2["memory_gib"]["gradients"] == pytest.approx(s2["trainable_params"] * 4 / 8 / GIB,
                                                          rel=1e-6)
    assert s2["memory_gib"]["optimizer"] == pytest.approx(2 * s2["memory_gib"]["gradients"])
    for s in (s1, s2):
        ckpt, plain = s["memory_checkpointed_gib"], s["memory_gib"]
        assert ckpt["activations"] < plain["activations"] / 3
        assert s["total_checkpointed_gib"] < 80  # the recipe fits 80 GB GPUs
        assert s["tokens_per_step"] == s["global_batch"] * p1["seq_len"]
        assert s["epoch_hours"] == pytest.approx(s["epoch_steps"] * s["seconds_per_step"] / 3600)
    assert (s1["global_batch"], s1["micro_batch_per_gpu"], s2["global_batch"]) == (256, 16, 128)
    ddp = plan.make_plan(load_config(STAGE2), gpus=8, strategy="ddp", precision="bf16")
    (d2,) = ddp["stages"]
    assert d2["memory_gib"]["weights"] == pytest.approx(8 * s2["memory_gib"]["weights"])
    assert d2["total_checkpointed_gib"] > 80  # full 7B finetuning needs sharding
    # bf16 halves the activations that are matrix-product outputs, not the fp32 masters
    fp32 = plan.make_plan(load_config(STAGE1), gpus=8, strategy="fsdp", precision="fp32")
    (f1,) = fp32["stages"]
    assert f1["memory_gib"]["weights"] == s1["memory_gib"]["weights"]
    assert 1.3 < f1["memory_gib"]["activations"] / s1["memory_gib"]["activations"] < 2


def test_plan_of_the_real_llm_config_reads_its_geometry_from_the_gguf():
    cfg = load_config(CONFIGS / "smollm2_shapes.yaml")
    p = plan.make_plan(cfg, gpus=1, strategy="single", precision="bf16")
    assert "SmolLM2" in p["geometry"]
    assert 134e6 < p["parameters"]["lm"] < 136e6  # SmolLM2-135M
    stage1, stage2 = p["stages"]
    assert stage1["lm"] == "frozen" and stage2["lm"] == "lora"
    assert stage1["memory_gib"]["gradients"] < 0.01 < stage2["memory_gib"]["gradients"] + 0.01


def test_command_line_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        plan.main(["--help"])
    out = capsys.readouterr().out
    for action in plan.build_parser()._actions:
        if action.option_strings and action.dest != "help":
            assert action.option_strings[-1] in out
    assert out.count("(default:") >= 10


def test_command_line_prints_the_plan(capsys):
    assert plan.main([str(STAGE1), "--gpus", "8", "--gpu-memory", "80"]) == 0
    out = capsys.readouterr().out
    assert "stage stage1_refiner_connector" in out and "fits" in out
    assert "256 = 16/GPU x 2 accum x 8 GPUs" in out and "epoch 37820 steps" in out
    assert plan.main([str(STAGE2), "--gpus", "8", "--strategy", "ddp", "--json"]) == 0
    assert '"strategy": "ddp"' in capsys.readouterr().out


def test_parameter_counts_are_the_saved_models_own(tiny_model_dir):
    from rgpt_model.build import load_model
    from rgpt_model.training.config import config_from_dict

    cfg = config_from_dict({"model": {"source": "pretrained", "path": str(tiny_model_dir)},
                            "stages": [{"name": "s", "train": ["refiner", "connector", "lm"],
                                        "lm_mode": "full"}]})
    geometry = plan.model_geometry(cfg)
    model = load_model(tiny_model_dir)
    assert sum(geometry.parts.values()) == sum(p.numel() for p in model.parameters())
    assert geometry.parts["lm"] == sum(p.numel() for p in model.language_model.parameters())
    assert geometry.note == f"RGPT at {tiny_model_dir}"
