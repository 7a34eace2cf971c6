"""Collapse alarms: cheap signs that a generator has degenerated, e.g. answering every context
with the same "i i i i . . . ." — corpus metrics such as BLEU stay quiet about it, these do not.

Words are whitespace tokens of the lowercased text, as in `lexical`; replies are compared after
lowercasing and collapsing whitespace.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from coral_cli.metrics.lexical import distinct_n, words

TOP_REPLY_SHARE = 0.2  # fluent replies to different contexts rarely repeat verbatim; >1 in 5 is a canned answer
TOP_REPLY_MIN_N = 10  # below this a few short identical replies ("ok .") are chance, not collapse
DIST1_VS_REFERENCES = 0.25  # human replies to the same contexts set the vocabulary bar; under a quarter of it is a handful of words
DIST1_FLOOR = 0.02  # without references: under 1 new word per 50 is a handful of words whatever the set size
WORD_RUN, BIGRAM_RUN = 4, 3  # "i i i i", "thank you thank you thank you": loops people do not write
REPEAT_RUN_SHARE = 0.2  # an occasional "ha ha ha ha" is human; in >1 in 5 replies it is a decoding loop
EMPTY_SHARE = 0.2  # an empty reply is the end token first; in >1 in 5 replies it is learned, not chance
SHOWN_CHARS = 40  # the most common reply is quoted up to this length


def normalise(text: str) -> str:
    return " ".join(words(text))


def has_repeat_run(text: str) -> bool:
    """A word repeated >= WORD_RUN times in a row, or a bigram >= BIGRAM_RUN times in a row."""
    w = words(text)
    for size, times in ((1, WORD_RUN), (2, BIGRAM_RUN)):
        span = size * times
        if any(w[i : i + span] == w[i : i + size] * times for i in range(len(w) - span + 1)):
            return True
    return False


def most_common_reply(responses: Sequence[str]) -> tuple[str, int]:
    """(normalised reply, count) of the most frequent reply; ("", 0) for no responses."""
    counts = Counter(normalise(r) for r in responses)
    return counts.most_common(1)[0] if counts else ("", 0)


def collapse_stats(responses: Sequence[str], references: Sequence[str] | None = None) -> dict[str, float]:
    """Shares in [0, 1] over `responses`; `reference_Dist-1` is the references' own Dist-1 on as
    many items (Dist-n falls as a set grows, so only equal sizes compare)."""
    n = max(1, len(responses))
    stats = {
        "top_reply_share": most_common_reply(responses)[1] / n,
        "distinct_replies": len({normalise(r) for r in responses}) / n,
        "Dist-1": distinct_n(responses, 1),
        "repeat_run_share": sum(has_repeat_run(r) for r in responses) / n,
        "empty_share": sum(not words(r) for r in responses) / n,
    }
    if references is not None:
        stats["reference_Dist-1"] = distinct_n(list(references)[: len(responses)], 1)
    return stats


def collapse_warnings(stats: dict[str, float], n: int, top_reply: str = "") -> list[str]:
    """One sentence per alarm that `stats` (of `n` replies) raises: what was seen, the threshold;
    `top_reply` (the most common reply) is quoted in the identical-reply alarm."""
    out = []
    empty_is_top = stats["empty_share"] >= stats["top_reply_share"]  # then the empty-reply alarm says it
    if n >= TOP_REPLY_MIN_N and stats["top_reply_share"] > TOP_REPLY_SHARE and not empty_is_top:
        shown = top_reply if len(top_reply) <= SHOWN_CHARS else top_reply[: SHOWN_CHARS - 1] + "…"
        out.append(f"{stats['top_reply_share']:.0%} of {n} replies are the same reply ('{shown}'), above the "
                   f"{TOP_REPLY_SHARE:.0%} alarm: the generator has collapsed")
    ref = stats.get("reference_Dist-1") or 0.0
    bar = DIST1_VS_REFERENCES * ref if ref else DIST1_FLOOR
    why = f"{DIST1_VS_REFERENCES} x the references' own {ref:.4f} = {bar:.4f}" if ref else f"the {bar} floor"
    if n and stats["empty_share"] < 1 and stats["Dist-1"] < bar:  # no words at all: nothing to measure
        out.append(f"Dist-1 of {n} replies is {stats['Dist-1']:.4f}, under {why}: the replies reuse a handful of words")
    if stats["repeat_run_share"] > REPEAT_RUN_SHARE:
        out.append(f"{stats['repeat_run_share']:.0%} of {n} replies repeat a word {WORD_RUN}+ times or a bigram "
                   f"{BIGRAM_RUN}+ times in a row, above the {REPEAT_RUN_SHARE:.0%} alarm: degenerate repetition")
    if stats["empty_share"] > EMPTY_SHARE:
        out.append(f"{stats['empty_share']:.0%} of {n} replies are empty, above the {EMPTY_SHARE:.0%} alarm")
    return out


def check_collapse(responses: Sequence[str], references: Sequence[str] | None = None) -> tuple[dict[str, float], list[str]]:
    """`collapse_stats` and their `collapse_warnings` in one call (evaluate and the trainer)."""
    stats = collapse_stats(responses, references)
    return stats, collapse_warnings(stats, len(responses), most_common_reply(responses)[0])
