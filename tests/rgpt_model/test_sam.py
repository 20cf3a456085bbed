"""SAM prompts -> masks: a tiny SAM built from segment_anything.modeling classes (no checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rgpt_model.errors import InvalidQueryError, ModelLoadError
from rgpt_model.sam import RegionPrompt, SamPrompter, export_sam_decoder
from tests.tiny_sam import make_tiny_sam


@pytest.fixture(scope="module")
def tiny_sam() -> torch.nn.Module:
    return make_tiny_sam()


@pytest.fixture(scope="module")
def decoder_path(tiny_sam, tmp_path_factory):
    return export_sam_decoder(tiny_sam, tmp_path_factory.mktemp("sam") / "decoder.onnx")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)


PROMPTS = [
    RegionPrompt(id=3, box=(5, 4, 30, 20), label="cup"),
    RegionPrompt(id=7, points=[(60, 30)], point_labels=[1]),
    RegionPrompt(id=9, box=(40, 10, 30, 30), points=[(50, 20), (45, 35)], point_labels=[1, 0]),
    RegionPrompt(id=11, box=(0, 0, 80, 48)),
    RegionPrompt(id=12, points=[(10, 10), (20, 30)], point_labels=[1, 1]),
]


def test_onnx_decoder_matches_pytorch(tiny_sam, decoder_path, image):
    torch_p = SamPrompter(tiny_sam, use_onnx=False)
    onnx_p = SamPrompter(tiny_sam, use_onnx=True, decoder_onnx_path=decoder_path)
    assert (torch_p.backend, onnx_p.backend) == ("torch", "onnx")
    a = torch_p.predict(image, PROMPTS, return_logits=True)
    b = onnx_p.predict(image, PROMPTS, return_logits=True)
    assert a.masks.shape == (len(PROMPTS), 48, 80)
    assert np.abs(a.masks - b.masks).max() <= 1e-4
    assert np.abs(a.scores - b.scores).max() <= 1e-4
    assert b.ids == [3, 7, 9, 11, 12] and b.labels[0] == "cup"
    bool_masks = onnx_p.predict(image, PROMPTS).masks
    assert bool_masks.dtype == bool
    # decisions agree except where a logit sits at the threshold
    near = np.abs(a.masks) < 1e-3
    assert np.array_equal(bool_masks[~near], (a.masks > 0)[~near])


def test_batched_prompts_equal_single_prompts(tiny_sam, decoder_path, image):
    p = SamPrompter(tiny_sam, decoder_onnx_path=decoder_path)
    batch = p.predict(image, PROMPTS, return_logits=True).masks
    for i, prompt in enumerate(PROMPTS):
        one = p.predict(image, [prompt], return_logits=True).masks[0]
        assert np.abs(one - batch[i]).max() <= 1e-4


def test_pytorch_path_matches_sam_forward(tiny_sam, image):
    """Our decoder input (resized coords, padding point) reproduces SAM's own prompt path."""
    p = SamPrompter(tiny_sam, use_onnx=False)
    emb = p.set_image(image)
    h, w = image.shape[:2]
    nh, nw = p._resized_shape(h, w)
    pts = torch.tensor([[[60 * nw / w, 30 * nh / h]]])
    with torch.no_grad():
        sparse, dense = tiny_sam.prompt_encoder(
            points=(pts, torch.ones(1, 1)), boxes=None, masks=None
        )
        low, iou = tiny_sam.mask_decoder.predict_masks(
            image_embeddings=emb,
            image_pe=tiny_sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        ref = tiny_sam.postprocess_masks(low, (nh, nw), (h, w))
    best = int(iou[0, 1:].argmax()) + 1  # one point + pad: SAM's ONNX rule = best multimask
    prompt = RegionPrompt(id=1, points=[(60, 30)], point_labels=[1])
    ours = p.predict(image, [prompt], return_logits=True)
    assert np.abs(ours.masks[0] - ref[0, best].numpy()).max() <= 1e-4
    assert np.isclose(ours.scores[0], float(iou[0, best]), atol=1e-5)


def test_helpers_and_errors(tiny_sam, decoder_path, image, tmp_path):
    p = SamPrompter(tiny_sam, decoder_onnx_path=decoder_path)
    assert p.masks_from_boxes(image, [(5, 4, 30, 20)]).shape == (1, 48, 80)
    assert p.masks_from_points(image, [[(10, 10)], [(60, 30), (70, 40)]]).shape == (2, 48, 80)
    assert p.predict(image, []).masks.shape == (0, 48, 80)
    with pytest.raises(InvalidQueryError):
        p.predict(image, [RegionPrompt(id=1)])
    with pytest.raises(InvalidQueryError):
        p.predict(image, [RegionPrompt(id=1, box=(0, 0, 0, 5))])
    with pytest.raises(ModelLoadError, match="not found"):
        SamPrompter.from_checkpoint(tmp_path / "sam_vit_b_01ec64.pth", "vit_b")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="cannot read"):
        SamPrompter.from_checkpoint(bad)
    with pytest.raises(ModelLoadError, match="unknown SAM model type"):
        torch.save({"image_encoder.pos_embed": torch.zeros(1, 1, 1, 768)}, bad)
        SamPrompter.from_checkpoint(bad, model_type="vit_x")


def test_parse_points():
    from rgpt_model.region_prompts import parse_points

    assert parse_points("10,20;30,40,0|5,6") == [
        [(10.0, 20.0, 1), (30.0, 40.0, 0)],
        [(5.0, 6.0, 1)],
    ]
    with pytest.raises(InvalidQueryError):
        parse_points("1,2,3,4")


def test_cli_sam_prompts(tiny_sam, decoder_path, image, tmp_path, monkeypatch, capsys):
    """The CLI turns --boxes/--points into SAM masks; a missing checkpoint is a clear error."""
    from PIL import Image

    from rgpt_model import cli, sam

    img_file = tmp_path / "img.png"
    Image.fromarray(image).save(img_file)
    rc = cli.main(
        ["describe", str(img_file), "--boxes", "5,4,30,20", "--sam", str(tmp_path / "x.pth")]
    )
    assert rc == 2 and "SAM checkpoint" in capsys.readouterr().err
    rc = cli.main(["describe", str(img_file), "--points", "10,10"])
    assert rc == 2 and "--points needs --sam" in capsys.readouterr().err

    seen = {}

    def fake_from_checkpoint(path, model_type="auto", **kw):
        seen["args"] = (str(path), model_type)
        return SamPrompter(tiny_sam, decoder_onnx_path=decoder_path)

    monkeypatch.setattr(sam.SamPrompter, "from_checkpoint", staticmethod(fake_from_checkpoint))
    args = cli.build_parser().parse_args(
        [
            "describe",
            str(img_file),
            "--boxes",
            "5,4,30,20",
            "--points",
            "60,30|10,10;20,30,0",
            "--sam",
            "ck.pth",
            "--sam-type",
            "vit_b",
        ]
    )
    got_image, masks = cli.load_inputs(args)
    assert seen["args"] == ("ck.pth", "vit_b")
    assert masks.shape == image.shape[:2] and masks.ids == (1, 2, 3)
    expected = (
        SamPrompter(tiny_sam, decoder_onnx_path=decoder_path)
        .predict(
            image,
            [
                RegionPrompt(1, box=(5, 4, 30, 20)),
                RegionPrompt(2, points=[(60, 30)], point_labels=[1]),
                RegionPrompt(3, points=[(10, 10), (20, 30)], point_labels=[1, 0]),
            ],
        )
        .masks
    )
    for k in range(3):  # a stack keeps every SAM mask whole, overlaps included
        assert np.array_equal(masks.masks[k], expected[k])
