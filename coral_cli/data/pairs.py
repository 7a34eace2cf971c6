"""Dialogues -> (context, response) pairs in a `datasets.Dataset`, and the utterance pool.

Every utterance with at least `min_context` preceding utterances is a response, its context
being all preceding utterances (paper §4.2: DailyDialog gives 76,052 / 7,069 / 5,740 pairs
with min_context 1 / 1 / 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from datasets import Dataset, Features, Sequence as SeqFeature, Value

from coral_cli.data.ubuntu import Pair

PAIR_FEATURES = Features(
    {
        "dialogue_id": Value("string"),
        "turn": Value("int32"),
        "context": SeqFeature(Value("string")),
        "response": Value("string"),
    }
)


def dialogue_pairs(dialogues: Sequence[Sequence[str]], prefix: str, min_context: int) -> list[Pair]:
    """One pair per utterance at index >= `min_context`; ids are `<prefix>-<line index>`."""
    return [
        Pair(f"{prefix}-{d}", turn, list(utts[:turn]), utts[turn])
        for d, utts in enumerate(dialogues)
        for turn in range(min_context, len(utts))
    ]


def pairs_to_dataset(pairs: Iterable[Pair]) -> Dataset:
    """Columns: dialogue_id, turn (index of the response in its dialogue), context, response."""
    pairs = list(pairs)
    return Dataset.from_dict(
        {
            "dialogue_id": [p.dialogue_id for p in pairs],
            "turn": [p.turn for p in pairs],
            "context": [p.context for p in pairs],
            "response": [p.response for p in pairs],
        },
        features=PAIR_FEATURES,
    )


def distinct_utterances(groups: Iterable[Iterable[str]]) -> list[str]:
    """Every distinct utterance, in first-seen order: the pool random negatives are drawn from."""
    seen: dict[str, None] = {}
    for group in groups:
        for utt in group:
            seen.setdefault(utt, None)
    return list(seen)
