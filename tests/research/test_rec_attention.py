"""REC attention supervision, number, expression and region position readouts (research aux
losses): where they point, that they train, that export undoes the attention switch."""

import numpy as np
import pytest
import torch

from research.rec_attention import (
    SUPERVISED_HEAD,
    RegionPositionReadout,
    expression_words,
    rec_attention_loss,
    rec_pointers,
    rec_readout_loss,
)
from rgpt_model import prompts
from rgpt_model.modeling import RGPTForCausalLM
from rgpt_model.tokenization import region_token_ids
from rgpt_model.training.config import config_from_dict
from rgpt_model.training.samples import (
    Conversation,
    Turn,
    collate,
    encode_conversation,
)
from rgpt_model.training.trainer import Trainer
from tests.rgpt_model.training.conftest import tiny_run_dict, word_tokenizer


def test_positions_of_quote_number_and_target_per_answer():
    tok = word_tokenizer()
    image_id = tok.convert_tokens_to_ids("<image>")
    conv = Conversation(np.zeros((8, 8, 3), np.uint8), np.ones((4, 8, 8), bool), [
        Turn(prompts.classification_prompt(1), "circle", [2], "classify"),
        Turn(prompts.rec_prompt("the red star", 4), "Region [3]", [1, 0, 3, 2], "rec"),
        Turn(prompts.rec_prompt("the blue heart", 4), prompts.NO_MATCH_ANSWER, [0, 1, 2, 3],
             "rec"),
        Turn(prompts.rec_prompt("the large cross", 2), "Region [1]", [3, 2], "rec"),
    ])
    enc = encode_conversation(conv, tok, image_id, 5, set(region_token_ids(tok)))
    assert len(enc.rec_positions) == 2  # one per answer with a target; none for no-match
    tokens = tok.convert_ids_to_tokens(enc.input_ids)
    for (quote, query, target), (number, last_word) in zip(
            enc.rec_positions, (("3", "star"), ("1", "cross")), strict=True):
        assert tokens[quote] == "'" and tokens[quote - 1] == last_word
        assert tokens[target] == f"<region{number}>" and target < quote < query
        assert tokens[query] == "[" and tokens[query + 1] == number
        assert enc.labels[query + 1] == enc.input_ids[query + 1]  # the number is supervised
    # each answer's positions stay inside its own turn
    assert enc.rec_positions[0][1] < enc.rec_positions[1][2]
    batch = collate([enc, enc], [torch.zeros(3, 8, 8)] * 2, [torch.ones(4, 8, 8)] * 2,
                    tok.pad_token_id)
    assert batch["rec_positions"].tolist() == ([[0, *p] for p in enc.rec_positions]
                                               + [[1, *p] for p in enc.rec_positions])


def test_pointer_layouts():
    positions = torch.tensor([[1, 10, 14, 4]])  # sample, quote, number query, target
    assert rec_pointers(positions, "quote").tolist() == [[1, -2, 10, 4], [1, -1, 14, 10]]
    assert rec_pointers(positions, "answer").tolist() == [[1, -2, 14, 10], [1, -1, 14, 4]]
    assert rec_pointers(positions[:0], "answer").shape == (0, 4)
    with pytest.raises(ValueError, match="layout 'sideways'"):
        rec_pointers(positions, "sideways")


def test_loss_is_minus_log_attention_of_the_supervised_heads():
    last = torch.full((2, 2, 5, 5), 0.2)
    last[1, SUPERVISED_HEAD, 4, 1] = 0.5
    before = torch.full((2, 2, 5, 5), 0.25)
    pointers = torch.tensor([[0, -1, 4, 2], [1, -1, 4, 1], [1, -2, 3, 0]])
    loss = rec_attention_loss((before, last), pointers)
    expected = -torch.log(torch.tensor([0.2, 0.5, 0.25])).mean()
    assert torch.isclose(loss, expected)
    assert rec_attention_loss((last,), torch.zeros((0, 4), dtype=torch.long)) == 0
    with pytest.raises(ValueError, match="at least 2 LM layers"):
        rec_attention_loss((last,), pointers)


@torch.no_grad()
def _forward(trainer: Trainer, batch: dict, output_attentions: bool = False,
             output_hidden_states: bool = False):
    """The trainer's model on one of its batches (image, masks and text)."""
    embeds = trainer.model.prepare_inputs_embeds(
        batch["input_ids"], batch["pixel_values"], batch["masks"], batch["region_image_index"],
        batch["region_feature_index"], batch["sample_image_index"])
    return trainer.model(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                         output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states)


@pytest.mark.parametrize("layout", ["quote", "answer"])
def test_supervised_rec_stage_trains_the_heads_and_exports_plain_attention(tmp_path, layout):
    d = tiny_run_dict(tmp_path, steps=30, plugins=["research"])
    d["stages"][0].update({"task_weights": {"rec": 1.0},
                           "aux_losses": {f"rec_attention_{layout}": 1.0}, "lr": 0.01})
    d["stages"].append({"name": "plain", "steps": 1})
    trainer = Trainer(config_from_dict(d), progress=False)
    trainer.train(stop_at=1)
    assert trainer.model.language_model.config._attn_implementation == "eager"
    batch, _ = trainer.make_batch(0, 0)
    assert batch["rec_positions"].shape[0] > 0

    def attention_loss() -> float:
        out = _forward(trainer, batch, output_attentions=True)
        pointers = rec_pointers(batch["rec_positions"], layout)
        return float(rec_attention_loss(out.attentions, pointers))

    before = attention_loss()
    trainer.train(resume=False, stop_at=30)
    assert attention_loss() < 0.5 * before
    trainer.train(stop_at=31)  # the unsupervised stage goes back to the default attention
    assert trainer.model.language_model.config._attn_implementation != "eager"
    exported = RGPTForCausalLM.from_pretrained(trainer.export())
    assert exported.language_model.config._attn_implementation != "eager"


def test_readout_loss_is_cross_entropy_of_the_number_at_the_quote():
    logits = torch.randn(2, 6, 10)
    input_ids = torch.tensor([[1, 2, 3, 4, 5, 7], [1, 2, 3, 4, 9, 0]])
    # sample 0: quote at 2, "[" at 4 -> number input_ids[0, 5] = 7
    positions = torch.tensor([[0, 2, 4, 1], [1, 1, 3, 0]])
    loss = rec_readout_loss(logits, positions, input_ids)
    expected = torch.nn.functional.cross_entropy(
        torch.stack([logits[0, 2], logits[1, 1]]), torch.tensor([7, 9]))
    assert torch.isclose(loss, expected)
    assert rec_readout_loss(logits, positions[:0], input_ids) == 0


def _rec_readout_run(tmp_path, loss: str, mask_position: bool = False
                     ) -> tuple[Trainer, dict]:
    """A 30-step all-REC tiny run with the aux loss ``loss``, and its first batch."""
    d = tiny_run_dict(tmp_path, steps=30, save_every=30, plugins=["research"])
    if mask_position:  # the encoder trained along with the rest
        d["model"].update({"mask_position": True, "mask_position_scale": 10.0})
        d["stages"][0]["train"] = ["vision", "refiner", "connector", "position", "lm"]
    d["stages"][0].update({"task_weights": {"rec": 1.0}, "lr": 0.01, "aux_losses": {loss: 1.0}})
    trainer = Trainer(config_from_dict(d), progress=False)
    batch, _ = trainer.make_batch(0, 0)
    assert batch["rec_positions"].shape[0] > 0
    return trainer, batch


def _assert_readout_trains_and_resumes(trainer: Trainer, head: str, readout_loss, tmp_path
                                       ) -> None:
    """Training halves the readout's loss, a resumed trainer gets the head back bit for bit,
    and a run whose stages do not read has no such head."""
    head_module = trainer.aux_losses[head]
    before = readout_loss()
    trainer.train()
    assert readout_loss() < 0.5 * before
    last = trainer.history[-1]  # the log shows the readout's part of the loss
    assert {"lm", head} <= set(last["parts"])
    assert last["loss"] == pytest.approx(sum(last["parts"].values()), rel=1e-5)
    resumed = Trainer(trainer.cfg, progress=False)
    assert resumed.load_checkpoint()
    for a, b in zip(resumed.aux_losses[head].parameters(), head_module.parameters(),
                    strict=True):
        assert torch.equal(a, b)
    assert head not in Trainer(config_from_dict(tiny_run_dict(tmp_path)),
                               progress=False).aux_losses


def test_readout_stage_trains_the_number_at_the_quote(tmp_path):
    trainer, batch = _rec_readout_run(tmp_path, "rec_number_readout")

    def readout_loss() -> float:
        logits = _forward(trainer, batch).logits
        return float(rec_readout_loss(logits, batch["rec_positions"], batch["input_ids"]))

    before = readout_loss()
    trainer.train()
    assert readout_loss() < 0.5 * before
    # attention stays the default: the readout needs no attention weights
    assert trainer.model.language_model.config._attn_implementation != "eager"


def test_expression_words_are_the_tokens_between_the_quotes():
    q = 9  # the quote token
    input_ids = torch.tensor([[1, q, 4, 5, 4, q, 2, 3], [q, 7, q, 1, q, 6, q, 3]])
    positions = torch.tensor([[0, 5, 7, 0], [1, 6, 7, 0]])  # (sample, closing quote, ...)
    words = expression_words(input_ids, positions, vocab_size=10)
    assert words[0].nonzero()[:, 0].tolist() == [4, 5]
    assert words[1].nonzero()[:, 0].tolist() == [6]  # only the last quoted span
    lone = torch.tensor([[1, 2, q, 3]])  # the only quote: nothing to read, no error
    assert expression_words(lone, torch.tensor([[0, 2, 3, 0]]), 10).sum() == 0


def test_expression_readout_stage_trains_its_head_and_resumes_it(tmp_path):
    trainer, batch = _rec_readout_run(tmp_path, "rec_expression_readout")

    def readout_loss() -> float:
        with torch.no_grad():
            out = _forward(trainer, batch, output_hidden_states=True)
            return float(trainer.aux_losses["rec_expression_readout"].loss(
                out.hidden_states, batch["rec_positions"], batch["input_ids"]))

    _assert_readout_trains_and_resumes(trainer, "rec_expression_readout", readout_loss,
                                       tmp_path)


def test_region_position_readout_targets_each_token_s_own_mask_centre():
    readout = RegionPositionReadout(hidden_size=2)
    with torch.no_grad():  # the head passes the hidden state through unchanged
        readout.head.weight.copy_(torch.eye(2))
        readout.head.bias.zero_()
    masks = torch.zeros(2, 64, 64)
    masks[0, 0:8, 0:8] = 1  # top left: centre (4/64, 4/64) -> -0.875
    masks[1, 56:64, 24:40] = 1  # bottom middle: centre (0.5, 60/64) -> (0, 0.875)
    tokens = torch.tensor([[False, True, False, True]])  # placeholder 0 -> mask 1, 1 -> 0
    index = torch.tensor([1, 0])
    hidden = torch.zeros(1, 4, 2)
    hidden[0, 1] = torch.tensor([0.0, 0.875])
    hidden[0, 3] = torch.tensor([-0.875, -0.875])
    states = (hidden, hidden, hidden)  # (embeddings, layer 1 = input to the last, output)
    assert readout.loss(states, tokens, masks, index) < 1e-10
    assert readout.loss(states, tokens, masks, torch.tensor([0, 1])) > 0.5  # swapped
    assert readout.loss(states, torch.zeros(1, 4, dtype=torch.bool), masks, index[:0]) == 0


def test_region_position_readout_stage_trains_its_head_and_resumes_it(tmp_path):
    trainer, batch = _rec_readout_run(tmp_path, "rec_position_readout", mask_position=True)
    region_tokens = torch.isin(batch["input_ids"], torch.as_tensor(
        trainer.model.config.region_token_ids))

    def readout_loss() -> float:
        with torch.no_grad():
            out = _forward(trainer, batch, output_hidden_states=True)
            return float(trainer.aux_losses["rec_position_readout"].loss(
                out.hidden_states, region_tokens, batch["masks"],
                batch["region_feature_index"]))

    _assert_readout_trains_and_resumes(trainer, "rec_position_readout", readout_loss, tmp_path)
