"""The geometry of a run's model for the planner (plan.py): parameter counts and shapes.

No weights are read: the model is built on PyTorch's ``meta`` device from the sources' config
files (a saved RGPT, a LLaVA directory, or an LLM plus a CLIP or RGPT donor), or, when they are
not on this machine, CLIP ViT-L/336 + Vicuna-7B, the paper's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from rgpt_model.config import RGPTConfig
from rgpt_model.training.config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Geometry:
    """What the memory model needs to know of a model."""

    note: str  # where the geometry came from
    parts: dict[str, int]  # parameters of vision, refiner, position, connector, lm
    layer_params: int  # the largest FSDP unit (a decoder or vision layer)
    root_params: int  # parameters outside the layers (FSDP's root group)
    lora_params: int  # trainable LoRA parameters for the run's LoRA settings
    hidden: int
    kv_dim: int
    intermediate: int
    layers: int
    vocab: int
    vision_hidden: int
    vision_intermediate: int
    vision_layers: int
    patches: int  # vision tokens per image
    grid: int  # patch grid side
    refiner_hidden: int
    global_tokens: int


def _source_configs(cfg: TrainConfig) -> tuple[RGPTConfig | None, dict, str]:
    """(the saved RGPTConfig of a pretrained source, else None; RGPTConfig arguments read from
    the llava/components sources' config files, empty when they are not on this machine;
    where the geometry comes from)."""
    from transformers import AutoConfig

    from rgpt_model.build import REGION_ENCODER_KEYS

    m = cfg.model
    try:
        if m.source == "pretrained" and m.path:
            return RGPTConfig.from_pretrained(m.path), {}, f"RGPT at {m.path}"
        if m.source == "llava" and m.path and (Path(m.path) / "config.json").is_file():
            lc = AutoConfig.from_pretrained(m.path)
            return None, {"vision_config": lc.vision_config.to_dict(),
                          "text_config": lc.text_config.to_dict()}, f"LLaVA at {m.path}"
        if m.source == "components" and m.path and m.clip_path:
            from rgpt_model.real_llm import resolve_llm

            where = resolve_llm(m.path)
            text = AutoConfig.from_pretrained(where.directory, **where.from_pretrained_kwargs())
            vision = AutoConfig.from_pretrained(m.clip_path)
            settings = {}
            if isinstance(vision, RGPTConfig):  # an RGPT donor lends its region encoder
                settings = {k: getattr(vision, k) for k in REGION_ENCODER_KEYS}
                vision = vision.vision_config
            return None, {"vision_config": vision.to_dict(), "text_config": text.to_dict(),
                          **settings}, f"CLIP {m.clip_path} + LLM {m.path}"
    except (OSError, ValueError) as exc:
        logger.info("sources not readable here (%s): paper geometry assumed", exc)
    return None, {}, "CLIP ViT-L/336 + Vicuna-7B (the paper's; sources not on this machine)"


def rgpt_config(cfg: TrainConfig) -> tuple[RGPTConfig, str]:
    """The RGPTConfig a run would build, without weights or tokenizer files."""
    m = cfg.model
    if m.source == "scratch":
        from rgpt_model.tokenization import build_word_tokenizer
        from rgpt_model.training.builder import scratch_config, synthetic_texts

        tok = build_word_tokenizer(synthetic_texts(cfg.data.seed),
                                   num_region_tokens=m.num_region_tokens)
        return scratch_config(cfg, tok), "scratch model of the config"
    saved, kwargs, note = _source_configs(cfg)
    if saved is not None:
        return saved, note
    kwargs["patch_merge_factor"] = m.patch_merge_factor
    if m.vision_feature_layer is not None:
        kwargs["vision_feature_layer"] = m.vision_feature_layer
    config = RGPTConfig(**kwargs)
    config.text_config.vocab_size += m.num_region_tokens + 2  # <image>, <region>, <regionK>
    return config, note


def _count(modules) -> int:
    seen, total = set(), 0
    for mod in modules:
        for p in mod.parameters() if mod is not None else ():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def model_geometry(cfg: TrainConfig) -> Geometry:
    """Parameter counts and shapes of the run's model, built on the meta device."""
    from rgpt_model.modeling import RGPTForCausalLM

    config, note = rgpt_config(cfg)
    with torch.device("meta"):
        model = RGPTForCausalLM(config)
    lm = model.language_model
    parts = {"vision": _count([model.vision_tower]),
             "refiner": _count([model.refiner, model.mask_encoder, model.pixel_branch]),
             "position": _count([model.mask_position]), "connector": _count([model.connector]),
             "lm": _count([lm])}
    layers = [mod for mod in model.modules()
              if type(mod).__name__ in set(model._no_split_modules)]
    layer_params = max((_count([mod]) for mod in layers), default=0)
    lora = cfg.lora
    lora_params = sum(lora.r * (mod.in_features + mod.out_features)
                      for name, mod in lm.named_modules()
                      if isinstance(mod, torch.nn.Linear)
                      and name.rsplit(".", 1)[-1] in set(lora.target_modules))
    t, v = config.text_config, config.vision_config
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    kv_heads = getattr(t, "num_key_value_heads", None) or t.num_attention_heads
    return Geometry(
        note=note, parts=parts, layer_params=layer_params,
        root_params=sum(parts.values()) - sum(_count([mod]) for mod in layers),
        lora_params=lora_params, hidden=t.hidden_size, kv_dim=kv_heads * head_dim,
        intermediate=t.intermediate_size, layers=t.num_hidden_layers, vocab=t.vocab_size,
        vision_hidden=v.hidden_size, vision_intermediate=v.intermediate_size,
        vision_layers=v.num_hidden_layers, patches=config.grid_size ** 2 + 1,
        grid=config.grid_size,
        refiner_hidden=(config.refiner_hidden_size or v.hidden_size) if config.use_refinement
        else 0,
        global_tokens=config.num_global_tokens)
