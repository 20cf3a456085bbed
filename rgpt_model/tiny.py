"""A tiny random RGPT for tests and for running the node before a trained model exists.

CLIP: hidden 32, 2 layers, 32 px images, patch 8 (4x4 grid, 16x16 refined, 4 global tokens).
Llama: hidden 64, 2 layers. A word-level tokenizer covers the prompt templates, COCO-80 and
the given vocabulary, so the model needs no download. Outputs are random but deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import prompts
from .config import RGPTConfig

TINY_NUM_REGION_TOKENS = 64


def tiny_texts(vocabulary: Sequence[str] | None = None) -> list[str]:
    """Texts whose words the tiny tokenizer knows: templates, answers, labels."""
    texts = [
        prompts.SYSTEM_PROMPT,
        "USER: ASSISTANT:",
        prompts.classification_prompt(1),
        prompts.rec_prompt("the red mug on the left", 8),
        prompts.brief_caption_prompt(1),
        prompts.detailed_caption_prompt(1),
        prompts.short_answer_prompt("what is it? is it red or blue?"),
        prompts.NO_MATCH_ANSWER,
        "Region [1] a an the of and with on in left right top bottom small large red green blue",
        "what which where is are this that object color colour it they there",
        " ".join(prompts.COCO80),
    ]
    if vocabulary:
        texts.append(" ".join(vocabulary))
    return texts


# Sub-config sizes of the tiny model (also used by the GPU benchmark's --tiny mode).
TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
    "projection_dim": 32,
}
TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
}


def tiny_config(vocab_size: int, **overrides) -> RGPTConfig:
    """The tiny RGPTConfig (token ids filled in by :func:`make_tiny_model`)."""
    kw = dict(
        vision_config=dict(TINY_VISION),
        text_config={
            **TINY_TEXT,
            "vocab_size": vocab_size,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 3,
        },
        patch_merge_factor=2,
        refiner_hidden_size=16,
        max_regions_per_prompt=8,
    )
    kw.update(overrides)
    return RGPTConfig(**kw)


def make_tiny_model(
    path: str | Path,
    seed: int = 0,
    vocabulary: Sequence[str] | None = None,
    **config_overrides,
) -> Path:
    """Build a tiny random RGPT (model + tokenizer + processor config) and save it to ``path``
    (built by :func:`rgpt_model.build.build_tiny`)."""
    from .build import build_tiny

    path = Path(path)
    model, processor = build_tiny(seed=seed, vocabulary=vocabulary, **config_overrides)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
