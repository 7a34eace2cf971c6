"""Length and diversity: Avg. Len (words), Dist-n (Li et al. 2016) and self-BLEU.

Words are whitespace tokens of the lowercased text, the tokenisation the BLEU variants and
METEOR also use.
"""

from __future__ import annotations

from collections.abc import Sequence


def words(text: str) -> list[str]:
    return text.lower().split()


def average_length(responses: Sequence[str]) -> float:
    """Mean number of words per response."""
    return sum(len(words(r)) for r in responses) / max(1, len(responses))


def distinct_n(responses: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the whole set of responses (0 when there are none)."""
    grams = [tuple(w[i : i + n]) for r in responses for w in [words(r)] for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
