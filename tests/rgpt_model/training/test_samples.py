"""Conversation building: answer-only labels, per-turn region mapping, collation."""

import numpy as np
import torch

from rgpt_model import prompts
from rgpt_model.data.synthetic import SceneConfig, generate_scene
from rgpt_model.tokenization import region_token_ids
from rgpt_model.training.samples import (
    IGNORE_INDEX,
    Conversation,
    Turn,
    collate,
    encode_conversation,
    scene_conversation,
)

from .conftest import word_tokenizer


def test_labels_only_on_answers_and_region_rows():
    tok = word_tokenizer()
    image_id = tok.convert_tokens_to_ids("<image>")
    conv = Conversation(np.zeros((8, 8, 3), np.uint8), np.ones((3, 8, 8), bool), [
        Turn(prompts.classification_prompt(1), "circle", [2]),
        Turn(prompts.rec_prompt("the red star", 3), "Region [2]", [1, 0, 2]),
    ])
    enc = encode_conversation(conv, tok, image_id, 5, set(region_token_ids(tok)))
    assert enc.input_ids.count(image_id) == 5
    assert enc.region_rows == [2, 1, 0, 2]
    supervised = [t for t, lab in zip(enc.input_ids, enc.labels, strict=True)
                  if lab != IGNORE_INDEX]
    text = tok.decode(supervised, skip_special_tokens=False)
    assert text.split() == ["circle", "</s>", "region", "[", "2", "]", "</s>"]
    # the first turn is exactly the single-turn inference prompt
    single = tok(prompts.generation_prompt(prompts.classification_prompt(1)))["input_ids"]
    expanded = [i for t in single for i in ([t] * 5 if t == image_id else [t])]
    assert enc.input_ids[: len(expanded)] == expanded


def test_scene_conversation_is_seeded_and_collates():
    scene = generate_scene(0, 3, "train", SceneConfig(height=64, width=64))
    a = scene_conversation(scene, np.random.default_rng(1), {"rec": 1.0, "classify": 1.0}, 5)
    b = scene_conversation(scene, np.random.default_rng(1), {"rec": 1.0, "classify": 1.0}, 5)
    assert [t.question for t in a.turns] == [t.question for t in b.turns]
    assert {t.task for t in a.turns} <= {"rec", "classify"}
    tok = word_tokenizer()
    ids = set(region_token_ids(tok))
    image_id = tok.convert_tokens_to_ids("<image>")
    encs = [encode_conversation(a, tok, image_id, 4, ids), encode_conversation(b, tok, image_id,
                                                                               4, ids)]
    masks = [torch.ones(len(scene.regions), 16, 16)] * 2
    batch = collate(encs, [torch.zeros(3, 16, 16)] * 2, masks, tok.pad_token_id)
    n = len(scene.regions)
    assert batch["masks"].shape[0] == 2 * n
    assert batch["region_feature_index"].numel() == sum(len(e.region_rows) for e in encs)
    assert int(batch["region_feature_index"].max()) < 2 * n
    assert batch["region_image_index"].tolist() == [0] * n + [1] * n
