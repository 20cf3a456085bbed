"""Special tokens of RGPT and a word-level tokenizer for tiny/demo models.

``<image>`` expands into the global tokens; ``<region>`` and ``<region1>``..``<regionK>`` are
region placeholders, one token each, registered as special tokens so no tokenizer ever splits
them. ``build_word_tokenizer`` makes a download-free tokenizer (lowercase words and punctuation)
from example texts, for tests and the small demo model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

IMAGE_TOKEN = "<image>"
REGION_TOKEN = "<region>"
BOS_TOKEN, EOS_TOKEN, UNK_TOKEN, PAD_TOKEN = "<s>", "</s>", "<unk>", "<pad>"
DEFAULT_NUM_REGION_TOKENS = 64

_REGION_RE = re.compile(r"<region(\d*)>")


def region_token(n: int | None = None) -> str:
    """``<region>`` for ``None``, else the numbered placeholder ``<regionN>`` (N >= 1)."""
    return REGION_TOKEN if n is None else f"<region{int(n)}>"


def region_tokens(k: int = DEFAULT_NUM_REGION_TOKENS) -> list[str]:
    """``<region>`` followed by ``<region1>`` .. ``<regionK>``."""
    return [REGION_TOKEN] + [region_token(i) for i in range(1, k + 1)]


def find_region_placeholders(text: str) -> list[int | None]:
    """Placeholders of ``text`` in order: N for ``<regionN>``, None for ``<region>``."""
    return [int(m.group(1)) if m.group(1) else None for m in _REGION_RE.finditer(text)]


def add_rgpt_tokens(
    tokenizer: PreTrainedTokenizerBase, num_region_tokens: int = DEFAULT_NUM_REGION_TOKENS
) -> int:
    """Add ``<image>`` / region placeholders (and a pad token) that the tokenizer lacks.

    Returns how many tokens were added, so the caller can resize the LM embeddings.
    """
    vocab = tokenizer.get_vocab()
    wanted = [IMAGE_TOKEN] + region_tokens(num_region_tokens)
    missing = [t for t in wanted if t not in vocab]
    added = 0
    if missing:  # special tokens: never split, never lowercased
        added += tokenizer.add_tokens(missing, special_tokens=True)
    if tokenizer.pad_token is None:
        if tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            added += tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return added


def region_token_ids(
    tokenizer: PreTrainedTokenizerBase, num_region_tokens: int | None = None
) -> list[int]:
    """Token ids of ``<region>``, ``<region1>``.. present in the tokenizer (in that order)."""
    vocab = tokenizer.get_vocab()
    ids = []
    if REGION_TOKEN in vocab:
        ids.append(vocab[REGION_TOKEN])
    n = 1
    while (num_region_tokens is None or n <= num_region_tokens) and region_token(n) in vocab:
        ids.append(vocab[region_token(n)])
        n += 1
    return ids


_WORD_RE = re.compile(r"\w+|[^\w\s]")


def build_word_tokenizer(
    texts: Iterable[str],
    extra_tokens: Iterable[str] = (),
    num_region_tokens: int = DEFAULT_NUM_REGION_TOKENS,
) -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer (lowercase; words, digits and punctuation are tokens).

    Vocabulary: ``<unk> <s> </s> <pad>`` (ids 0..3), ``<image>``, the region placeholders, the
    numbers 0..max(100, K), ``extra_tokens``, then every word of ``texts``. ``<s>`` is prepended
    when ``add_special_tokens=True``. Needs no download, so tiny and demo models are self-contained.
    """
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    specials = [UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, IMAGE_TOKEN]
    specials += region_tokens(num_region_tokens)
    vocab: dict[str, int] = {}
    for tok in specials:
        vocab.setdefault(tok, len(vocab))
    words = [str(i) for i in range(max(100, num_region_tokens) + 1)]
    words += [t.lower() for t in extra_tokens]
    for text in texts:
        text = _REGION_RE.sub(" ", text.replace(IMAGE_TOKEN, " "))
        words += _WORD_RE.findall(text.lower())
    for w in words:
        vocab.setdefault(w, len(vocab))

    tok = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A $B", special_tokens=[(BOS_TOKEN, 1)]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[IMAGE_TOKEN] + region_tokens(num_region_tokens),
        padding_side="left",
    )
    return fast
