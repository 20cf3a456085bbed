"""Task-guided prompts of RGPT, the Vicuna v1 conversation format, and answer parsers.

The templates fix the output scope of each task (as in the paper): classification answers with
a vocabulary entry, REC answers "Region [x]" (or "No corresponding options found."), captions
are free text. Parsers are tolerant because small or partly trained models drift from the
template ("region 2", "Region [2] and Region [5]", "A Dog.").
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .tokenization import IMAGE_TOKEN, region_token

COCO80: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

NO_MATCH_ANSWER = "No corresponding options found."
SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
ROLES = ("USER", "ASSISTANT")
SEP, SEP2 = " ", "</s>"

TASKS = ("classify", "rec", "brief_caption", "detailed_caption", "short_answer", "question")


# --------------------------------------------------------------------------- conversation
def conversation_prompt(
    turns: Sequence[tuple[str, str | None]],
    *,
    with_image: bool = True,
    system: str = SYSTEM_PROMPT,
) -> str:
    """Vicuna v1 conversation text.

    ``turns`` is a list of (user message, assistant answer); the last answer may be ``None`` to
    leave the prompt open for generation ("... ASSISTANT:"). ``<image>\\n`` is put before the
    first user message unless it already contains ``<image>`` or ``with_image`` is False.
    Format: ``system USER: msg ASSISTANT: answer</s>USER: ...`` (LLaVA's ``conv_vicuna_v1``).
    """
    out = system + SEP
    for i, (user, answer) in enumerate(turns):
        if i == 0 and with_image and IMAGE_TOKEN not in user:
            user = f"{IMAGE_TOKEN}\n{user}"
        out += f"{ROLES[0]}: {user}{SEP}{ROLES[1]}:"
        if answer is not None:
            out += f" {answer}{SEP2}"
        elif i != len(turns) - 1:
            raise ValueError("only the last turn may have no answer")
    return out


def generation_prompt(question: str, *, with_image: bool = True) -> str:
    """One-turn conversation ending in ``ASSISTANT:``, ready for generation."""
    return conversation_prompt([(question, None)], with_image=with_image)


# ------------------------------------------------------------------------------ templates
def _region(region: int | str | None) -> str:
    if isinstance(region, str):
        return region
    return region_token(region)


def classification_prompt(
    region: int | str | None = 1,
    vocabulary: Sequence[str] | None = None,
    vocabulary_name: str | None = None,
    max_listed: int = 100,
) -> str:
    """Paper template: "What category name best describes the region represented by <region1>?
    Answer the question using COCO-80 category names."

    With a custom vocabulary and no ``vocabulary_name``, up to ``max_listed`` names are listed
    in the prompt (so the model knows the label space).
    """
    q = f"What category name best describes the region represented by {_region(region)}?"
    if vocabulary is None or (vocabulary_name is None and tuple(vocabulary) == COCO80):
        return f"{q} Answer the question using COCO-80 category names."
    if vocabulary_name:
        return f"{q} Answer the question using {vocabulary_name} category names."
    names = ", ".join(list(vocabulary)[:max_listed])
    return f"{q} Answer the question using one of these category names: {names}."


def rec_prompt(expression: str, num_regions: int) -> str:
    """Paper template: "From the provided masks denoted by <region1>, ..., <regionK>, which one
    fits '<expression>'? Answer the question using the template Region [x]."
    """
    regions = ", ".join(region_token(i) for i in range(1, num_regions + 1))
    expression = expression.strip().strip("'\"")
    return (
        f"From the provided masks denoted by {regions}, which one fits '{expression}'? "
        "Answer the question using the template Region [x]."
    )


def brief_caption_prompt(region: int | str | None = 1) -> str:
    """Short region caption (RefCOCOg-style phrase)."""
    return f"Provide a short description for the region {_region(region)}."


def detailed_caption_prompt(region: int | str | None = 1) -> str:
    """Paper template: "Describe in detail the object located at <region2> in the image."."""
    return f"Describe in detail the object located at {_region(region)} in the image."


def short_answer_prompt(question: str) -> str:
    """Paper suffix for single-word answers (VQA style)."""
    return f"{question.strip()} Answer the question using a single word or phrase."


def question_prompt(question: str) -> str:
    """Free-form question: used as written."""
    return question.strip()


# -------------------------------------------------------------------------------- parsers
_NUM_RE = re.compile(r"\d+")
_REGION_WORD_RE = re.compile(r"region", re.IGNORECASE)
_NONE_RE = re.compile(r"no\s+(corresponding|matching)?\s*(option|region|mask|object)s?", re.I)


def parse_rec_answer(answer: str, num_candidates: int | None = None) -> list[int]:
    """Region numbers (1-based, as written in the prompt) named by a REC answer.

    Tolerates "Region [2]", "region 2", "Region [2] and Region [5]", "regions 2, 5", "[3]" and
    a bare "3". "No corresponding options found." (or any "no ... option/region") gives [].
    Numbers outside 1..num_candidates are dropped; duplicates removed, order kept.
    """
    text = answer.strip()
    if not text:
        return []
    m = _REGION_WORD_RE.search(text)
    if m is not None:
        nums = _NUM_RE.findall(text[m.start() :])
    elif _NONE_RE.search(text):
        nums = []
    else:
        nums = _NUM_RE.findall(text)
    out: list[int] = []
    for n in (int(v) for v in nums):
        if n < 1 or (num_candidates is not None and n > num_candidates) or n in out:
            continue
        out.append(n)
    if not out and _NONE_RE.search(text):
        return []
    return out


@dataclass(frozen=True)
class LabelMatch:
    """A classification answer mapped to the vocabulary.

    ``score`` is 1.0 for an exact (normalised) match, else the string similarity in [0, 1]
    (difflib ratio, or coverage when a vocabulary entry is contained in the answer).
    """

    label: str
    score: float
    exact: bool


_ARTICLES = {"a", "an", "the", "this", "that", "it", "is", "its"}


def normalize_label(text: str) -> str:
    """Lowercase, drop punctuation and leading articles/filler, collapse spaces."""
    text = re.sub(r"[^\w\s]", " ", text.lower().replace("_", " "))
    words = text.split()
    while words and words[0] in _ARTICLES:
        words = words[1:]
    return " ".join(words)


def _singular(text: str) -> str:
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
                    for w in text.split())  # fmt: skip


def parse_classification_answer(answer: str, vocabulary: Sequence[str] = COCO80) -> LabelMatch:
    """Map a free-text answer to the closest vocabulary entry.

    Order: exact normalised match (also singular forms) -> longest entry contained in the
    answer (score = entry length / answer length, at least 0.5) -> best difflib ratio.
    """
    if not vocabulary:
        raise ValueError("vocabulary is empty")
    norm = normalize_label(answer)
    keys = [normalize_label(v) for v in vocabulary]
    for cand in (norm, _singular(norm)):
        for v, k in zip(vocabulary, keys, strict=True):
            if cand == k or cand == _singular(k):
                return LabelMatch(v, 1.0, True)
    padded = f" {_singular(norm)} "
    contained = [
        (len(k), v, k)
        for v, k in zip(vocabulary, keys, strict=True)
        if k and f" {_singular(k)} " in padded
    ]
    if contained:
        _, v, k = max(contained)
        return LabelMatch(v, max(0.5, min(1.0, len(k) / max(len(norm), 1))), False)
    best_v, best_s = vocabulary[0], -1.0
    for v, k in zip(vocabulary, keys, strict=True):
        s = difflib.SequenceMatcher(None, norm, k).ratio()
        if s > best_s:
            best_v, best_s = v, s
    return LabelMatch(best_v, float(max(best_s, 0.0)), False)


def clean_answer(text: str) -> str:
    """Strip the end-of-sequence marker and whitespace from a decoded answer."""
    return text.replace(SEP2, "").strip()
