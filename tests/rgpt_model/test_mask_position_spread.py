"""MaskPositionEncoder(spread=False): the centre only, so a mask's outline (its aspect) cannot
reach the region feature through this pathway (issue 20)."""

import torch

from rgpt_model.mask_position import MaskPositionEncoder


def _masks() -> torch.Tensor:
    """A wide bar, a tall bar and a small square, all centred at (32, 32) of 64x64."""
    m = torch.zeros(3, 64, 64)
    m[0, 28:36, 8:56] = 1
    m[1, 8:56, 28:36] = 1
    m[2, 30:34, 30:34] = 1
    return m


def test_without_spread_masks_with_one_centre_give_one_feature():
    torch.manual_seed(0)
    enc = MaskPositionEncoder(8, spread=False)
    torch.nn.init.normal_(enc.out.weight)  # the zero-init output would hide any difference
    out = enc(_masks())
    assert torch.allclose(out[0], out[1], atol=1e-5) and torch.allclose(out[0], out[2], atol=1e-5)
    moved = _masks().roll(10, dims=2)
    assert not torch.allclose(enc(moved)[0], out[0], atol=1e-3)


def test_with_spread_the_aspect_shows():
    torch.manual_seed(0)
    enc = MaskPositionEncoder(8, spread=True)
    torch.nn.init.normal_(enc.out.weight)
    out = enc(_masks())
    assert not torch.allclose(out[0], out[1], atol=1e-3)


def test_the_repr_and_so_the_onnx_fingerprint_tell_spread_from_no_spread():
    assert "spread" not in repr(MaskPositionEncoder(8))  # the default repr is unchanged
    assert "spread=False" in repr(MaskPositionEncoder(8, spread=False))
