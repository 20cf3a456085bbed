"""Bounds on one query, so no caller can keep the model busy for minutes.

Why: a 1 MB referring expression kept the node busy for 565 s (issue 18, defect 4). The
predictor refuses such a query before any work, the cheapest test first: the length in
characters before anything tokenizes the text, so a 1 MB string is refused at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidQueryError


@dataclass
class QueryLimits:
    """The longest expression/question (characters, then tokens) and the most new tokens a
    task may ask for. The predictor's keywords of the same names set them."""

    max_query_chars: int = 1000
    max_query_tokens: int = 256
    max_new_tokens_limit: int = 512

    def check_text(self, text: str, what: str, tokenizer) -> str:
        """``text`` if it is non-empty and within both bounds, else InvalidQueryError."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidQueryError(f"{what} is empty; pass the text to answer")
        if len(text) > self.max_query_chars:
            raise InvalidQueryError(
                f"{what} has {len(text)} characters, over the limit of {self.max_query_chars}; "
                "shorten it or raise max_query_chars"
            )
        n_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if n_tokens > self.max_query_tokens:
            raise InvalidQueryError(
                f"{what} has {n_tokens} tokens, over the limit of {self.max_query_tokens}; "
                "shorten it or raise max_query_tokens"
            )
        return text

    def check_max_new_tokens(self, max_new_tokens: int) -> int:
        """``max_new_tokens`` if it lies in 1..max_new_tokens_limit, else InvalidQueryError."""
        if not 1 <= int(max_new_tokens) <= self.max_new_tokens_limit:
            raise InvalidQueryError(
                f"max_new_tokens must be between 1 and {self.max_new_tokens_limit}, got "
                f"{max_new_tokens}; ask for fewer tokens or raise max_new_tokens_limit"
            )
        return int(max_new_tokens)
