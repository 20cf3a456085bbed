"""Tiny run configs shared by the training tests (64 px scenes, a few-hundred-k-param RGPT)."""

from __future__ import annotations

import pytest

from rgpt_model import prompts
from rgpt_model.tokenization import build_word_tokenizer
from rgpt_model.training.config import config_from_dict
from rgpt_model.training.samples import vocabulary_texts


def word_tokenizer():
    """Word tokenizer covering the synthetic prompts, with 8 region tokens."""
    return build_word_tokenizer(vocabulary_texts() + [prompts.SYSTEM_PROMPT, "USER ASSISTANT"],
                                num_region_tokens=8)


def tiny_run_dict(tmp_path, steps: int = 4, **extra) -> dict:
    d = {
        "output_dir": str(tmp_path / "run"),
        "seed": 0,
        "device": "cpu",
        "num_threads": 1,
        "images_per_step": 4,
        "save_every": 0,
        "log_every": 1,
        "model": {
            "source": "scratch",
            "vision": {"image_size": 64, "patch_size": 8, "hidden_size": 32,
                       "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2},
            "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 2},
            "refiner_hidden_size": 16,
            "patch_merge_factor": 4,
            "num_region_tokens": 8,
        },
        "data": {"image_height": 64, "image_width": 64, "max_turns": 4},
        "stages": [{"name": "s", "steps": steps, "lr": 0.003, "warmup_steps": 2}],
    }
    d.update(extra)
    return d


@pytest.fixture
def tiny_run(tmp_path):
    def make(steps: int = 4, **extra):
        return config_from_dict(tiny_run_dict(tmp_path, steps, **extra))

    return make
