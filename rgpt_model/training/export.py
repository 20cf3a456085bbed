"""A trained run as an ordinary RGPT directory (``save_pretrained``), the one that
``rgpt_model.build.load_predictor`` and the ROS node load.

The weights come as a full state dict (gathered from the shards under FSDP) into a fresh,
unwrapped model built from the trained model's config, so the export is the same whatever
the strategy and leaves the training model as it was. LoRA layers are merged into the LLM.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from rgpt_model.modeling import RGPTForCausalLM
from rgpt_model.processor import RGPTProcessor
from rgpt_model.training.config import LoraSpec, TrainConfig, save_config


def _no_init_weights():
    """transformers' context that skips random initialisation (moved in transformers 5)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        from transformers.modeling_utils import no_init_weights
    return no_init_weights()


def lora_config(spec: LoraSpec):
    """peft's LoraConfig for the run's LoRA settings (training and export use the same)."""
    from peft import LoraConfig

    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=list(spec.target_modules), bias="none")


def save_model_directory(state: dict[str, torch.Tensor], model_config, processor: RGPTProcessor,
                         cfg: TrainConfig, path: Path, *, lora: bool,
                         attn_implementation: str, dtype: torch.dtype) -> Path:
    """Write the model whose weights are ``state`` (keys of the training model, with LoRA
    layers when ``lora``) to ``path`` in ``dtype``, with its processor and run config."""
    config = copy.deepcopy(model_config)
    previous = torch.get_default_dtype()
    # built in the saved dtype (half the memory of a 7B export in bf16); LoRA merges in fp32
    torch.set_default_dtype(torch.float32 if lora else dtype)
    try:
        with _no_init_weights():  # every weight is overwritten below
            model = RGPTForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.tie_weights()
    if lora:
        from peft import get_peft_model

        model.language_model = get_peft_model(model.language_model, lora_config(cfg.lora))
    model.load_state_dict(state, strict=True)
    if lora:
        model.language_model = model.language_model.merge_and_unload()
    model = model.to("cpu", dtype).eval()
    model.language_model.set_attn_implementation(attn_implementation)  # eager was for training
    model.save_pretrained(path)
    processor.save_pretrained(path)
    save_config(cfg, path / "train_config.yaml")
    return path
