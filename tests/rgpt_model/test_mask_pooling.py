"""Mask pooling and mask resizing against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from rgpt_model.errors import EmptyMaskError, InvalidMaskError
from rgpt_model.mask_pooling import mask_pool, resize_masks


def test_hand_computed_average():
    feats = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(1, 2, 3, 3)
    m = torch.zeros(1, 3, 3)
    m[0, 0, 0] = m[0, 2, 2] = 1.0
    m[0, 1, 1] = 0.5  # soft weights are honoured
    expected = (feats[0, :, 0, 0] + feats[0, :, 2, 2] + 0.5 * feats[0, :, 1, 1]) / 2.5
    torch.testing.assert_close(mask_pool(feats, m)[0], expected)


def test_full_mask_is_global_mean_and_image_index():
    feats = torch.randn(2, 4, 5, 5)
    out = mask_pool(feats, torch.ones(2, 5, 5), torch.tensor([1, 0]))
    torch.testing.assert_close(out[0], feats[1].mean(dim=(1, 2)))
    torch.testing.assert_close(out[1], feats[0].mean(dim=(1, 2)))


def test_order_equivariant():
    feats = torch.randn(1, 8, 6, 6)
    masks = (torch.rand(5, 6, 6) > 0.5).float()
    masks[:, 0, 0] = 1
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(mask_pool(feats, masks[perm]), mask_pool(feats, masks)[perm])


def test_tiny_mask_keeps_weight_after_resize():
    m = torch.zeros(2, 336, 336)
    m[0, 100, 200] = 1  # one pixel: bilinear 336->24 misses it
    m[1, :168] = 1
    r = resize_masks(m, 24)
    assert r.shape == (2, 24, 24)
    assert float(r[0].sum()) > 0
    assert int(r[0].nonzero()[0][0]) == 100 * 24 // 336
    assert torch.allclose(r[1, :12], torch.ones(12, 24))


def test_empty_and_bad_masks():
    feats = torch.randn(1, 4, 3, 3)
    with pytest.raises(EmptyMaskError):
        mask_pool(feats, torch.zeros(1, 3, 3))
    with pytest.raises(InvalidMaskError, match="resize_masks"):
        mask_pool(feats, torch.ones(1, 4, 4))
    assert mask_pool(feats, torch.zeros(0, 3, 3)).shape == (0, 4)
