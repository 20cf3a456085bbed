"""RGPTForCausalLM: LLaVA parity, region placeholders, save/load (also of the layout before the
region encoder), LLaVA import, load errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration

from rgpt_model.build import build_from_llava, load_model, rgpt_from_llava_model
from rgpt_model.config import RGPTConfig
from rgpt_model.errors import ModelLoadError, RegionCountMismatchError
from rgpt_model.modeling import LEGACY_REGION_ENCODER_PARTS, RGPTForCausalLM
from rgpt_model.predictor import RGPTPredictor
from rgpt_model.processor import RGPTProcessor
from rgpt_model.tiny import make_tiny_model, tiny_config

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
              image_size=32, patch_size=8, projection_dim=32)  # fmt: skip
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, vocab_size=120, max_position_embeddings=256)  # fmt: skip
IMG_ID = 100


def _tiny_llava(seed: int = 0) -> LlavaForConditionalGeneration:
    torch.manual_seed(seed)
    cfg = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", **VISION},
        text_config={"model_type": "llama", **TEXT},
        image_token_index=IMG_ID,
        image_seq_length=16,
    )
    return LlavaForConditionalGeneration(cfg).eval()


def _ids(n_img: int = 16) -> torch.Tensor:
    return torch.tensor([[1, 5, 6] + [IMG_ID] * n_img + [7, 8, 9]])


@torch.no_grad()
def test_llava_parity_in_memory():
    llava = _tiny_llava()
    rgpt = rgpt_from_llava_model(llava, use_refinement=False).eval()
    pix = torch.randn(1, 3, 32, 32)
    ref = llava(input_ids=_ids(), pixel_values=pix).logits
    out = rgpt(input_ids=_ids(), pixel_values=pix).logits
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # refinement only touches region features: the global path stays LLaVA's
    rgpt2 = rgpt_from_llava_model(llava, use_refinement=True).eval()
    torch.testing.assert_close(rgpt2(input_ids=_ids(), pixel_values=pix).logits, ref)


@torch.no_grad()
def test_llava_import_from_disk(tmp_path):
    from rgpt_model.tokenization import build_word_tokenizer

    llava = _tiny_llava(1)
    tok = build_word_tokenizer(["what is this"], num_region_tokens=0)
    img_id = tok.convert_tokens_to_ids("<image>")
    llava.config.image_token_id = img_id
    llava.save_pretrained(tmp_path / "llava")
    tok.save_pretrained(tmp_path / "llava")
    rgpt, processor = build_from_llava(tmp_path / "llava")
    text = [i for i in range(1, 120) if i not in {img_id, *rgpt.config.region_token_ids}]
    ids = torch.tensor([text[:3] + [img_id] * 16 + text[3:6]])
    pix = torch.randn(1, 3, 32, 32)
    ref = llava(input_ids=ids, pixel_values=pix).logits
    assert rgpt.config.patch_merge_factor == 1 and rgpt.refiner is not None
    assert rgpt.config.image_token_id == img_id == processor.image_token_id
    out = rgpt.eval()(input_ids=ids, pixel_values=pix).logits
    assert out.shape[-1] == len(processor.tokenizer) > 120  # region tokens were added
    torch.testing.assert_close(out[..., :120], ref)  # LLaVA's own vocabulary: unchanged


@torch.no_grad()
def test_predictor_from_llava_adds_region_tokens(tmp_path):
    from rgpt_model.tokenization import build_word_tokenizer

    llava = _tiny_llava(2)
    tok = build_word_tokenizer(["what is this"], num_region_tokens=0)
    llava.config.image_token_id = tok.convert_tokens_to_ids("<image>")
    llava.resize_token_embeddings(max(len(tok), 120))
    llava.save_pretrained(tmp_path / "llava")
    tok.save_pretrained(tmp_path / "llava")
    pred = RGPTPredictor.from_llava(tmp_path / "llava")
    assert len(pred.model.config.region_token_ids) == 65
    assert pred.model.get_input_embeddings().weight.shape[0] >= len(pred.processor.tokenizer)
    img = np.zeros((32, 32, 3), np.uint8)
    lab = np.zeros((32, 32), np.uint8)
    lab[4:9, 4:9] = 1
    assert isinstance(pred.ask(img, lab, "what is <region1>?", max_new_tokens=2), str)


def _inputs(tiny_model_dir, n_masks=3, seed=0):
    proc = RGPTProcessor.from_pretrained(tiny_model_dir)
    rng = np.random.RandomState(seed)
    img = rng.randint(0, 255, (40, 60, 3), np.uint8)
    masks = np.zeros((n_masks, 40, 60), bool)
    for i in range(n_masks):
        masks[i, 5 * i : 5 * i + 8, 10 * i : 10 * i + 12] = True
    return proc, img, masks


@torch.no_grad()
def test_region_placeholder_embedding_is_connector_output(tiny_model_dir):
    model = load_model(tiny_model_dir)
    proc, img, masks = _inputs(tiny_model_dir)
    text = "<image>\nCompare <region2> with <region1> and <region3>, then <region2>."
    enc = proc(text, img, masks)
    g, r = model.region_encoder(enc["pixel_values"], enc["masks"])
    region_embeds = model.project(r)
    embeds = model.prepare_inputs_embeds(
        enc["input_ids"], enc["pixel_values"], enc["masks"],
        region_feature_index=enc["region_feature_index"],
    )  # fmt: skip
    ids = enc["input_ids"][0]
    pos = torch.isin(ids, torch.tensor(model.config.region_token_ids)).nonzero().flatten()
    assert enc["region_feature_index"].tolist() == [1, 0, 2, 1]
    for p, k in zip(pos.tolist(), [1, 0, 2, 1], strict=True):
        torch.testing.assert_close(embeds[0, p], region_embeds[k])
    # a region's embedding equals pooling its own mask alone
    alone = model.project(model.region_encoder(enc["pixel_values"], enc["masks"][1:2])[1])
    torch.testing.assert_close(alone[0], region_embeds[1])
    img_pos = (ids == model.config.image_token_id).nonzero().flatten()
    torch.testing.assert_close(embeds[0, img_pos], model.project(g)[0])


@torch.no_grad()
def test_placeholder_identity_adds_the_token_embedding(tiny_model_dir):
    """``region_placeholder_identity``: <region2> = region feature + its own token embedding
    times ``region_identity_scale``."""
    model = load_model(tiny_model_dir)
    model.config.region_placeholder_identity = True
    model.config.region_identity_scale = 3.0
    proc, img, masks = _inputs(tiny_model_dir)
    enc = proc("<image>\nCompare <region2> with <region1> and <region3>.", img, masks)
    region_embeds = model.project(model.region_encoder(enc["pixel_values"], enc["masks"])[1])
    embeds = model.prepare_inputs_embeds(enc["input_ids"], enc["pixel_values"], enc["masks"],
                                         region_feature_index=enc["region_feature_index"])
    ids = enc["input_ids"][0]
    pos = torch.isin(ids, torch.tensor(model.config.region_token_ids)).nonzero().flatten()
    token = model.get_input_embeddings()(ids[pos])
    for j, k in enumerate(enc["region_feature_index"].tolist()):
        torch.testing.assert_close(embeds[0, pos[j]], region_embeds[k] + 3.0 * token[j])
    assert not torch.allclose(token[0], token[1])  # the two placeholders stay distinguishable


@torch.no_grad()
def test_permuting_masks_permutes_outputs(tiny_model_dir):
    model = load_model(tiny_model_dir)
    proc, img, masks = _inputs(tiny_model_dir)
    q = "<image>\nWhat is <region1>?"
    perm = [2, 0, 1]

    def per_region_logits(m):
        enc = proc([q] * 3, img, m, region_lists=[[0], [1], [2]])
        return model(**enc).logits[:, -1]

    base = per_region_logits(masks)
    torch.testing.assert_close(per_region_logits(masks[perm]), base[perm], rtol=1e-5, atol=1e-5)


def test_count_mismatch(tiny_model_dir):
    model = load_model(tiny_model_dir)
    proc, img, masks = _inputs(tiny_model_dir)
    with pytest.raises(RegionCountMismatchError, match="not referred"):
        proc("<image>\nWhat is <region1>?", img, masks)
    with pytest.raises(RegionCountMismatchError, match="only 3 mask"):
        proc("<image>\n<region4> <region1> <region2> <region3>", img, masks)
    with pytest.raises(RegionCountMismatchError):
        proc("<region> <region> <region> <region>", img, masks)
    enc = proc("<image>\n<region> and <region>", img, masks[:2])
    with pytest.raises(RegionCountMismatchError):
        model(enc["input_ids"], enc["pixel_values"], enc["masks"][:1])


@torch.no_grad()
def test_save_load_identical(tiny_model_dir, tmp_path, scene):
    img, lab = scene
    pred = RGPTPredictor.from_pretrained(tiny_model_dir)
    pred.save_pretrained(tmp_path / "copy")
    again = RGPTPredictor.from_pretrained(tmp_path / "copy")
    for a, b in zip(
        pred.model.state_dict().values(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert pred.describe(img, lab, max_new_tokens=3) == again.describe(img, lab, max_new_tokens=3)
    half = RGPTPredictor.from_pretrained(tmp_path / "copy", dtype="bfloat16")
    assert half.model.dtype == torch.bfloat16
    assert len(half.describe(img, lab, tasks=("classify",), max_new_tokens=2)) == 3


def test_config_defaults_follow_paper():
    c = RGPTConfig()
    assert c.vision_config.hidden_size == 1024 and c.image_size == 336
    assert c.vision_feature_layer == -2 and c.grid_size == 24 and c.refined_grid_size == 96
    assert c.text_config.hidden_size == 4096 and c.text_config.num_hidden_layers == 32
    # the additions beyond the paper are off unless asked for (docs/ADDITIONS.md)
    assert not (c.use_mask_encoder or c.use_mask_position or c.region_placeholder_identity)
    model = RGPTForCausalLM(tiny_config(50))
    assert model.mask_encoder is None and model.mask_position is None
    with pytest.raises(ValueError):
        RGPTConfig(patch_merge_factor=5)


def test_load_errors(tmp_path, tiny_model_dir):
    with pytest.raises(ModelLoadError, match="does not exist"):
        RGPTPredictor.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_model(bad)
    noweights = tmp_path / "noweights"
    noweights.mkdir()
    (noweights / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model(noweights)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_model_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="cannot load the weights"):
        load_model(broken)
    with pytest.raises(ModelLoadError, match="dtype"):
        RGPTPredictor.from_pretrained(tiny_model_dir, dtype="int3")
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    assert cfg["model_type"] == "rgpt"


@torch.no_grad()
def test_from_separate_clip_and_llm_dirs(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from rgpt_model.tokenization import build_word_tokenizer

    torch.manual_seed(0)
    clip = CLIPVisionModel(CLIPVisionConfig(**VISION)).eval()
    tok = build_word_tokenizer(["what is this"], num_region_tokens=4)
    llm = LlamaForCausalLM(LlamaConfig(**{**TEXT, "vocab_size": len(tok)})).eval()
    clip.save_pretrained(tmp_path / "clip")
    llm.save_pretrained(tmp_path / "llm")
    tok.save_pretrained(tmp_path / "llm")
    pred = RGPTPredictor.from_components(tmp_path / "clip", tmp_path / "llm", patch_merge_factor=2)
    for k, v in clip.state_dict().items():
        assert torch.equal(pred.model.vision_tower.state_dict()[k], v)
    for k, v in llm.state_dict().items():  # embeddings grew by the added region tokens
        assert torch.equal(pred.model.language_model.state_dict()[k][: v.shape[0]], v)
    assert len(pred.processor.tokenizer) == pred.model.get_input_embeddings().weight.shape[0]
    assert pred.model.config.image_token_id == tok.convert_tokens_to_ids("<image>")
    assert pred.processor.num_global_tokens == 4
    img = np.zeros((32, 32, 3), np.uint8)
    lab = np.zeros((32, 32), np.uint8)
    lab[4:9, 4:9] = 1
    assert len(pred.describe(img, lab, tasks=("classify",), max_new_tokens=2)) == 1
    with pytest.raises(ModelLoadError):
        RGPTPredictor.from_components(tmp_path / "nope", tmp_path / "llm")


def _write_legacy_layout(src, dst) -> None:
    """Copy a model directory, renaming its weights to the layout before the region encoder."""
    from safetensors.torch import load_file, save_file

    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    weights = load_file(src / "model.safetensors")
    save_file({k.removeprefix("region_encoder."): v for k, v in weights.items()},
              dst / "model.safetensors", metadata={"format": "pt"})


@torch.no_grad()
def test_checkpoint_of_the_old_layout_loads_and_saves_in_the_new(tmp_path, scene):
    """Saves from before issue 18 (top-level vision_tower.*, refiner.*, ...) load through the
    key mapping with every weight in place; saving writes region_encoder.*."""
    from safetensors import safe_open

    path = make_tiny_model(tmp_path / "new", seed=2, use_mask_encoder=True, use_mask_position=True,
                           use_pixel_branch=True, pixel_branch_width=8)
    _write_legacy_layout(path, tmp_path / "old")
    with safe_open(tmp_path / "old" / "model.safetensors", "pt") as f:
        old_keys = set(f.keys())
    assert {k.split(".")[0] for k in old_keys} == {*LEGACY_REGION_ENCODER_PARTS, "connector",
                                                   "language_model"}
    new, old = load_model(path), load_model(tmp_path / "old")
    for (ka, a), (kb, b) in zip(new.state_dict().items(), old.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(a, b), ka
    img, lab = scene
    answers = [RGPTPredictor.from_pretrained(d).describe(img, lab, max_new_tokens=3)
               for d in (path, tmp_path / "old")]
    assert answers[0] == answers[1]
    old.save_pretrained(tmp_path / "resaved")
    with safe_open(tmp_path / "resaved" / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert keys == {f"region_encoder.{k}" if k.split(".")[0] in LEGACY_REGION_ENCODER_PARTS
                    else k for k in old_keys}
