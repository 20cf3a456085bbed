"""Prompt text of the data writers, delegated to the model library's ``rgpt_model.prompts``.

The single place where the data side touches prompt wording, so training records use exactly
the templates the predictor uses at inference (same classification wording for a custom
vocabulary, same REC template, same answer parser).
"""

from __future__ import annotations

from collections.abc import Sequence

from rgpt_model import prompts

NO_MATCH_ANSWER = prompts.NO_MATCH_ANSWER

# JSONL task name -> rgpt_model.prompts task name.
PROMPT_TASK: dict[str, str] = {
    "classify": "classify",
    "caption_brief": "brief_caption",
    "caption_detail": "detailed_caption",
    "refer": "rec",
    "short_answer": "short_answer",
    "free": "question",
}


def classify_prompt(
    n: int = 1, vocabulary: Sequence[str] | None = None, vocabulary_name: str | None = None
) -> str:
    """Region classification; COCO-80 wording by default, else the listed/named vocabulary."""
    return prompts.classification_prompt(n, vocabulary=vocabulary, vocabulary_name=vocabulary_name)


def brief_caption_prompt(n: int = 1) -> str:
    """Short caption ("<size> <colour> <shape>" on synthetic data)."""
    return prompts.brief_caption_prompt(n)


def detail_caption_prompt(n: int = 1) -> str:
    """Detailed region caption, the paper's wording."""
    return prompts.detailed_caption_prompt(n)


def refer_prompt(num_regions: int, expression: str) -> str:
    """Referring expression comprehension among ``num_regions`` candidate masks."""
    return prompts.rec_prompt(expression, num_regions)


def refer_answer(indices: Sequence[int]) -> str:
    """ "Region [k]" for 1-based candidate indices; the no-match sentence when empty."""
    if not indices:
        return NO_MATCH_ANSWER
    return ", ".join(f"Region [{int(k)}]" for k in indices)


def short_answer_prompt(question: str) -> str:
    """Short-answer question: the question plus the single-word/phrase instruction."""
    return prompts.short_answer_prompt(question)


def parse_refer_answer(text: str, num_candidates: int | None = None) -> list[int]:
    """1-based candidate indices named in a REC answer; [] for "no match" or no index."""
    return prompts.parse_rec_answer(text, num_candidates)
