"""Task-guided instruction templates used when writing training/evaluation records.

The single place where the data side spells out prompt text, so it can be switched over to
``rgpt_model.prompts`` (the model library's templates) without touching the writers.
Wording follows the paper's task-guided prompts (see shared DESIGN.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

NO_MATCH_ANSWER = "No corresponding options found."
SHORT_ANSWER_SUFFIX = "Answer the question using a single word or phrase."


def region(n: int) -> str:
    """Numbered placeholder ``<regionN>`` (1-based)."""
    return f"<region{int(n)}>"


def classify_prompt(n: int = 1, vocabulary: str = "COCO-80 category names") -> str:
    """Region classification; ``vocabulary`` names the label set."""
    return (f"What category name best describes the region represented by {region(n)}? "
            f"Answer the question using {vocabulary}.")


def brief_caption_prompt(n: int = 1) -> str:
    """Short caption ("<size> <colour> <shape>" on synthetic data)."""
    return f"Describe briefly the object located at {region(n)} in the image."


def detail_caption_prompt(n: int = 1) -> str:
    """Detailed region caption, the paper's wording."""
    return f"Describe in detail the object located at {region(n)} in the image."


def refer_prompt(num_regions: int, expression: str) -> str:
    """Referring expression comprehension among ``num_regions`` candidate masks."""
    marks = " ".join(region(i) for i in range(1, num_regions + 1))
    return (f"From the provided masks denoted by {marks}, which one fits '{expression}'? "
            f"Answer the question using the template Region [x].")


def refer_answer(indices: Sequence[int]) -> str:
    """"Region [k]" for 1-based candidate indices; the no-match sentence when empty."""
    if not indices:
        return NO_MATCH_ANSWER
    return ", ".join(f"Region [{int(k)}]" for k in indices)


def short_answer_prompt(question: str) -> str:
    """Short-answer question: the question plus the single-word/phrase instruction."""
    return f"{question.rstrip()} {SHORT_ANSWER_SUFFIX}"


_REGION_ANSWER_RE = re.compile(r"region\s*\[\s*(\d+)\s*\]", re.IGNORECASE)


def parse_refer_answer(text: str) -> list[int] | None:
    """1-based candidate indices named in a REC answer; [] for the no-match sentence.

    None when the text is neither (the caller counts it as wrong).
    """
    found = [int(k) for k in _REGION_ANSWER_RE.findall(text)]
    if found:
        return sorted(set(found))
    if "no corresponding options" in text.lower():
        return []
    return None
