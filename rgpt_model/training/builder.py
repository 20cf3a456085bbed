"""The model and processor a run starts from (scratch, RGPT dir, LLaVA dir, CLIP + LM).

Construction itself is :mod:`rgpt_model.build`'s; here the run config picks the source and
sizes a scratch model, whose vocabulary comes from the synthetic scenes."""

from __future__ import annotations

import logging

import numpy as np
import torch

from rgpt_model.build import (
    build_from_components,
    build_from_config,
    build_from_llava,
    build_pretrained,
)
from rgpt_model.config import RGPTConfig
from rgpt_model.data.attributes import SHAPES
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.modeling import RGPTForCausalLM
from rgpt_model.processor import RGPTProcessor
from rgpt_model.tiny import tiny_texts
from rgpt_model.tokenization import build_word_tokenizer, region_token_ids
from rgpt_model.training.config import TrainConfig
from rgpt_model.training.samples import TASK_NAMES, scene_turns, vocabulary_texts
from rgpt_model.training.warm_start import load_parts, weights_path

logger = logging.getLogger(__name__)


def synthetic_texts(seed: int, num_scenes: int = 30, height: int = 128,
                    width: int = 128) -> list[str]:
    """Every prompt and answer text of ``num_scenes`` synthetic scenes (tokenizer vocabulary).

    Scenes of all splits are read: the splits share one closed vocabulary of words.
    """
    from rgpt_model.data.attributes import SHAPES

    texts = tiny_texts(SHAPES) + vocabulary_texts()
    weights = dict.fromkeys(TASK_NAMES, 1.0)
    scfg = SceneConfig(height=height, width=width)
    for split in ("train", "val", "test"):
        for i in range(num_scenes // 3 + 1):
            scene = generate_scene(seed, i, split, scfg)
            rng = np.random.default_rng([seed, i, 7])
            texts += [r.detail_caption for r in scene.regions]
            texts += [e.text for e in scene.expressions]
            texts += [t.question + " " + t.answer for t in scene_turns(scene, rng, weights, 4)]
    return texts


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """(grid*grid, dim) 2D sin-cos position table (MAE style), unit variance per dim."""
    quarter = dim // 4
    omega = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float32) / max(quarter - 1, 1)))
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float32),
                            torch.arange(grid, dtype=torch.float32), indexing="ij")
    out = []
    for coord in (xs.flatten(), ys.flatten()):
        ang = coord[:, None] * omega[None, :] * 2.0
        out += [torch.sin(ang), torch.cos(ang)]
    table = torch.cat(out, dim=1)
    if table.shape[1] < dim:
        table = torch.cat([table, torch.zeros(table.shape[0], dim - table.shape[1])], dim=1)
    return table * (2.0 ** 0.5)


@torch.no_grad()
def init_sincos_positions(model: RGPTForCausalLM, scale: float) -> None:
    """Start a from-scratch vision tower with strong 2D sin-cos position embeddings.

    CLIP's default init makes positions ~50x weaker than patch content, so a tower trained
    from scratch learns where things are (and hence region extent and shape) slowly.
    """
    vt = model.vision_tower
    emb = getattr(vt, "vision_model", vt).embeddings
    grid = model.config.vision_config.image_size // model.config.vision_config.patch_size
    table = sincos_2d(grid, emb.position_embedding.weight.shape[1]) * scale
    emb.position_embedding.weight[1:] = table.to(emb.position_embedding.weight.dtype)
    emb.position_embedding.weight[0] = 0.0


def scratch_config(cfg: TrainConfig, tokenizer) -> RGPTConfig:
    """RGPTConfig of a from-scratch model sized by ``cfg.model``."""
    m = cfg.model
    v, t = m.vision, m.text
    vocab = tokenizer.get_vocab()
    return RGPTConfig(
        vision_config={
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_hidden_layers": v.num_hidden_layers,
            "num_attention_heads": v.num_attention_heads,
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "projection_dim": v.hidden_size,
        },
        text_config={
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads,
            "vocab_size": len(vocab),
            "max_position_embeddings": t.max_position_embeddings,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        image_size=v.image_size,
        patch_merge_factor=m.patch_merge_factor,
        refiner_hidden_size=m.refiner_hidden_size,
        use_mask_encoder=m.mask_encoder,
        use_mask_position=m.mask_position,
        mask_position_scale=m.mask_position_scale,
        mask_position_spread=m.mask_position_spread,
        use_pixel_branch=m.pixel_branch,
        region_placeholder_identity=m.region_placeholder_identity,
        region_identity_scale=m.region_identity_scale,
        vision_feature_layer=-1 if m.vision_feature_layer is None else m.vision_feature_layer,
        image_token_id=vocab["<image>"],
        region_token_ids=region_token_ids(tokenizer),
        freeze_vision_tower=m.freeze_vision_tower,
        max_regions_per_prompt=8,
        # synthetic scenes teach the shape names: the predictor's default label set
        label_vocabulary=list(SHAPES) if cfg.data.source == "synthetic" else None,
    )


def _scratch_texts(cfg: TrainConfig) -> list[str]:
    """The texts a from-scratch word tokenizer is built from."""
    texts = synthetic_texts(cfg.data.seed, height=cfg.data.image_height,
                            width=cfg.data.image_width)
    if cfg.data.source == "jsonl":
        from rgpt_model.data.jsonl_format import read_jsonl

        for path in cfg.data.jsonl:
            for rec in read_jsonl(path):
                texts += [t["value"] for t in rec["conversations"]]
    elif cfg.data.source == "annotations":
        from rgpt_model.training.annotation_source import annotation_records

        texts += [t["value"] for recs in annotation_records(cfg.data).values()
                  for rec in recs for t in rec["conversations"]]
    return texts


def build_model(cfg: TrainConfig) -> tuple[RGPTForCausalLM, RGPTProcessor]:
    """Model + processor for the start of a run (weights seeded by ``cfg.seed``), built by the
    functions of :mod:`rgpt_model.build`."""
    m = cfg.model
    torch.manual_seed(cfg.seed)
    if m.source == "scratch":
        if m.warm_start is not None:  # its LM's words: the tokenizer comes with it
            weights_path(m.warm_start.path, m.warm_start.sha256)
            tokenizer = RGPTProcessor.from_pretrained(m.warm_start.path).tokenizer
        else:
            tokenizer = build_word_tokenizer(_scratch_texts(cfg),
                                             num_region_tokens=m.num_region_tokens)
        model, processor = build_from_config(scratch_config(cfg, tokenizer), tokenizer)
        if m.sincos_position_init > 0:
            init_sincos_positions(model, m.sincos_position_init)
        if m.warm_start is not None:
            load_parts(model, m.warm_start.path, m.warm_start.parts, m.warm_start.sha256)
        processor.pad_to_square = m.pad_to_square
        logger.info("new model: %d words, %.2f M parameters", len(tokenizer),
                    sum(p.numel() for p in model.parameters()) / 1e6)
        return model, processor
    if m.path is None:
        raise ValueError(f"model.source={m.source} needs model.path")
    if m.source == "pretrained":
        return build_pretrained(m.path, dtype=torch.float32)
    common = {"dtype": torch.float32, "num_region_tokens": m.num_region_tokens,
              "patch_merge_factor": m.patch_merge_factor,
              "freeze_vision_tower": m.freeze_vision_tower}
    if cfg.data.source == "synthetic":  # the predictor's default label set
        common["label_vocabulary"] = list(SHAPES)
    if m.vision_feature_layer is not None:  # else the source's own (LLaVA's, RGPT's, -2)
        common["vision_feature_layer"] = m.vision_feature_layer
    if m.source == "llava":
        return build_from_llava(m.path, **common)
    if m.clip_path is None:
        raise ValueError("model.source=components needs model.clip_path")
    return build_from_components(m.clip_path, m.path, **common)
