"""Shared fixtures: one tiny random RGPT per session, one thread (2 shared cores)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from rgpt_model.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_rgpt") / "model", seed=0)


@pytest.fixture(scope="session")
def predictor(tiny_model_dir):
    from rgpt_model.predictor import RGPTPredictor

    return RGPTPredictor.from_pretrained(tiny_model_dir)


@pytest.fixture()
def scene():
    """A 40x60 RGB image and a label image with ids 3, 5, 7."""
    rng = np.random.RandomState(0)
    img = rng.randint(0, 255, (40, 60, 3), dtype=np.uint8)
    lab = np.zeros((40, 60), np.uint8)
    lab[:10, :10] = 3
    lab[20:, 30:] = 5
    lab[25:30, 2:8] = 7
    return img, lab


@pytest.fixture(scope="session")
def demo_predictor():
    """The committed demo model (tests of real answers; shared, so restore what you change)."""
    from rgpt_model.build import load_predictor
    from rgpt_model.demo import DEMO_MODEL_DIR

    return load_predictor(DEMO_MODEL_DIR, device="cpu")
