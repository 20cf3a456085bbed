"""Decoding: shared-prefix equals batched and naive per-region greedy decoding token for token;
should_stop cancels between decoding steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rgpt_model import prompts
from rgpt_model.build import build_tiny
from rgpt_model.decoding import (
    DECODERS,
    common_prefix_length,
    greedy_generate,
    naive_generate,
    shared_prefix_generate,
)
from rgpt_model.errors import QueryCancelledError


@pytest.fixture(scope="module")
def tiny():
    return build_tiny(seed=0)


def _frame_inputs(model, processor, questions, n_regions=None):
    """Merged, left-padded embeddings for one prompt per region (same image)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    n = n_regions or len(questions)
    masks = np.zeros((n, 40, 56), dtype=bool)
    for i in range(n):
        masks[i, 2 + 3 * i : 12 + 3 * i, 4 + 2 * i : 30 + 2 * i] = True
    pix, tf = processor.preprocess_image(image)
    m = processor.preprocess_masks(masks, tf)
    with torch.no_grad():
        g, r = model.region_encoder(pix, m)
        ge, re_ = model.project(g), model.project(r)
    texts = [prompts.generation_prompt(q) for q in questions]
    enc = processor.tokenize(texts, [[i] for i in range(len(questions))])
    with torch.no_grad():
        embeds = model.merge_embeddings(enc["input_ids"], ge, re_, enc["region_feature_index"])
    return embeds, enc["attention_mask"]


def test_same_task_all_regions_equal_naive(tiny):
    model, proc = tiny
    q = prompts.brief_caption_prompt(1)
    embeds, attn = _frame_inputs(model, proc, [q] * 6)
    ref_t, ref_p = naive_generate(model, embeds, attn, 12, eos_token_id=None)
    got_t, got_p = shared_prefix_generate(model, embeds, attn, 12, eos_token_id=None)
    assert got_t == ref_t
    assert np.allclose(got_p, ref_p, atol=1e-5)
    # the whole prompt up to the region token is shared
    rows = [embeds[b, attn[b].bool()] for b in range(6)]
    assert common_prefix_length(rows) > proc.num_global_tokens


def test_different_prompt_and_answer_lengths(tiny):
    """Mixed questions (different suffix lengths) and an EOS that stops rows at different steps."""
    model, proc = tiny
    vocab = ("cat", "dog", "person")
    qs = [
        prompts.brief_caption_prompt(1),
        prompts.classification_prompt(1, vocab),
        prompts.detailed_caption_prompt(1),
        prompts.short_answer_prompt("what color is <region1>?"),
        prompts.brief_caption_prompt(1),
    ]
    embeds, attn = _frame_inputs(model, proc, qs)
    assert len(set(attn.sum(1).tolist())) > 1  # prompts really differ in length
    free, _ = naive_generate(model, embeds, attn, 10, eos_token_id=None)

    # choose as "EOS" a generated token that makes the naive answers end at different lengths
    def n_lengths(cand: int) -> int:
        return len({row.index(cand) if cand in row else len(row) for row in free})

    eos = max(dict.fromkeys(t for row in free for t in row), key=n_lengths)
    ref_t, ref_p = naive_generate(model, embeds, attn, 10, eos_token_id=eos)
    got_t, got_p = shared_prefix_generate(model, embeds, attn, 10, eos_token_id=eos)
    assert len({len(t) for t in ref_t}) >= 3
    assert got_t == ref_t
    assert np.allclose(got_p, ref_p, atol=1e-5)


def test_matches_predictor_batched_generate(tiny):
    """Same answers as the predictor's left-padded batched generate."""
    model, proc = tiny
    embeds, attn = _frame_inputs(model, proc, [prompts.brief_caption_prompt(1)] * 4)
    eos = proc.tokenizer.eos_token_id
    ref, _ = greedy_generate(model, embeds, attn, 8, eos, proc.tokenizer.pad_token_id)
    got, _ = shared_prefix_generate(model, embeds, attn, 8, eos, proc.tokenizer.pad_token_id)
    assert got == ref


def test_single_row_and_forced_prefix(tiny):
    model, proc = tiny
    embeds, attn = _frame_inputs(model, proc, [prompts.brief_caption_prompt(1)] * 3)
    ref, _ = naive_generate(model, embeds[:1], attn[:1], 6, eos_token_id=None)
    got, _ = shared_prefix_generate(model, embeds[:1], attn[:1], 6, eos_token_id=None)
    assert got == ref
    ref3, _ = naive_generate(model, embeds, attn, 6, eos_token_id=None)
    for p in (0, 5, 10_000):  # no prefix, short prefix, capped to length - 1
        got3, _ = shared_prefix_generate(model, embeds, attn, 6, None, prefix_len=p)
        assert got3 == ref3


def test_describe_tasks_in_one_batch_equal_separate_runs(predictor, scene):
    """describe() decodes classify + caption rows together; answers equal per-task runs."""
    img, lab = scene
    both = predictor.describe(img, lab, tasks=("classify", "caption"), max_new_tokens=6)
    cls = predictor.describe(img, lab, tasks=("classify",), max_new_tokens=6)
    cap = predictor.describe(img, lab, tasks=("caption",), max_new_tokens=6)
    assert [d.label for d in both] == [d.label for d in cls]
    assert [d.caption for d in both] == [d.caption for d in cap]
    assert np.allclose([d.label_score for d in both], [d.label_score for d in cls], atol=1e-5)
    predictor.decoding = "batched"
    try:
        ref = predictor.describe(img, lab, tasks=("classify", "caption"), max_new_tokens=6)
    finally:
        predictor.decoding = "shared_prefix"
    assert [(d.label, d.caption) for d in ref] == [(d.label, d.caption) for d in both]


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_should_stop_cancels_between_decoding_steps(tiny, name):
    """A cancel raised by should_stop after N polls leaves exactly N LM forward passes run."""
    model, proc = tiny
    embeds, attn = _frame_inputs(model, proc, [prompts.brief_caption_prompt(1)] * 3)
    forwards = polls = 0

    def count_forward(*_):
        nonlocal forwards
        forwards += 1

    def stop_after(n: int):
        def should_stop() -> bool:
            nonlocal polls
            polls += 1
            return polls > n
        return should_stop

    handle = model.language_model.register_forward_hook(count_forward)
    try:
        DECODERS[name](model, embeds, attn, 8, None, None, should_stop=lambda: False)
        full = forwards
        for n in (0, 1, 4):
            forwards = polls = 0
            with pytest.raises(QueryCancelledError):
                DECODERS[name](model, embeds, attn, 8, None, None, should_stop=stop_after(n))
            assert (forwards, polls) == (n, n + 1)
    finally:
        handle.remove()
    assert full >= 8  # the uncancelled decode runs every step
