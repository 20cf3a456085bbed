"""Two-stage region-caption pipeline end to end with tiny models (ours and a tiny LLaVA)."""

import json

import numpy as np
import pytest
from PIL import Image

from rgpt_model.data import region_captions as rc
from rgpt_model.data.jsonl_format import load_jsonl, write_label_png
from rgpt_model.data.synthetic import SceneConfig, generate_scene


@pytest.fixture(scope="module")
def scene_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    (root / "images").mkdir()
    names = {}
    for i in range(2):
        s = generate_scene(0, i, "val", SceneConfig(height=64, width=64))
        Image.fromarray(s.image).save(root / "images" / f"s{i}.png")
        write_label_png(root / "labels" / f"s{i}.png", s.labels)
        names[f"s{i}"] = {str(r.id): r.shape for r in s.regions}
    (root / "names.json").write_text(json.dumps(names))
    return root


class EchoCaptioner(rc.Captioner):
    """Records the prompts it gets; answers with the crop size."""

    def __init__(self):
        self.calls = []

    def caption(self, image, prompt, mask=None):
        self.calls.append((image.shape, prompt, None if mask is None else mask.shape))
        return "a scene" if mask is None else f"crop {image.shape[1]}x{image.shape[0]}"


def test_prompts_and_crop_box():
    assert rc.region_prompt("a red star.", None) == (
        "In the context of the entire image, a red star, describe the close-up region in "
        "detail.")
    assert "region of the dog" in rc.region_prompt("x", "dog")
    m = np.zeros((50, 50), bool)
    m[20:24, 30:32] = True
    x0, y0, x1, y1 = rc.crop_box(m, context=0.2, min_size=16)
    assert x1 - x0 >= 16 and y1 - y0 >= 16 and x0 <= 30 and x1 >= 32
    assert 0 <= x0 and x1 <= 50


def test_pipeline_two_stages_and_resume(scene_dirs, tmp_path):
    items = list(rc.items_from_dirs(scene_dirs / "images", scene_dirs / "labels",
                                    scene_dirs / "names.json"))
    cap = EchoCaptioner()
    out = tmp_path / "caps.jsonl"
    s1 = rc.run_pipeline(items, cap, out, progress=False)
    recs = load_jsonl(out)
    n_regions = sum(len(np.unique(np.array(Image.open(i.label_path)))) - 1 for i in items)
    assert s1["written"] == len(recs) == n_regions
    assert cap.calls[0][2] is None and cap.calls[0][0] == (64, 64, 3)  # stage 1: whole image
    assert all("In the context of the entire image, a scene" in c[1] for c in cap.calls[1:3])
    assert any("close-up region of the" in c[1] for c in cap.calls)  # class-name variant
    r = recs[0]
    assert r["task"] == "caption_detail" and r["meta"]["global_caption"] == "a scene"
    assert r["conversations"][1]["value"].startswith("crop ")
    # resumable: a second run writes nothing, a partial file is completed
    assert rc.run_pipeline(items, EchoCaptioner(), out, progress=False)["written"] == 0
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2]) + "\n")
    s3 = rc.run_pipeline(items, EchoCaptioner(), out, progress=False)
    assert s3["written"] == n_regions - 2 and len(load_jsonl(out)) == n_regions


def test_rgpt_backend_cli(scene_dirs, tmp_path):
    from rgpt_model.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny")
    out = tmp_path / "c.jsonl"
    rc.main(["--images", str(scene_dirs / "images"), "--labels", str(scene_dirs / "labels"),
             "--out", str(out), "--backend", "rgpt", "--model", str(model),
             "--max-new-tokens", "4", "--limit", "1", "--no-progress"])
    recs = load_jsonl(out)
    assert recs and all(r["meta"]["source"] == "region_captions" for r in recs)


def _tiny_llava(path):
    from transformers import (
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from rgpt_model.tokenization import build_word_tokenizer

    tok = build_word_tokenizer([rc.GLOBAL_PROMPT, rc.CONTEXT_PROMPT, "USER ASSISTANT a red"],
                               num_region_tokens=1)
    vocab = tok.get_vocab()
    cfg = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": 32,
                       "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        text_config={"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(vocab),
                     "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3},
        image_token_id=vocab["<image>"], vision_feature_layer=-2,
        vision_feature_select_strategy="default")
    LlavaForConditionalGeneration(cfg).save_pretrained(path)
    proc = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                           crop_size={"height": 32, "width": 32}),
        tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1)
    proc.save_pretrained(path)
    return path


def test_llava_backend(scene_dirs, tmp_path):
    path = _tiny_llava(tmp_path / "llava")
    cap = rc.make_captioner("llava", path, max_new_tokens=3)
    text = cap.caption(np.zeros((40, 30, 3), np.uint8), rc.GLOBAL_PROMPT)
    assert isinstance(text, str)
    items = list(rc.items_from_dirs(scene_dirs / "images", scene_dirs / "labels"))[:1]
    s = rc.run_pipeline(items, cap, tmp_path / "l.jsonl", progress=False)
    assert s["written"] >= 2
