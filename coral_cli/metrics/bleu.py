"""BLEU in the three variants dialogue papers use; the choice moves scores several-fold, so
the output always names the variant.

- sacrebleu: corpus BLEU with sacrebleu's own 13a tokenisation, lowercased (the generator's
  vocabulary is uncased), /100, with its signature.
- nltk-corpus: nltk corpus_bleu over whitespace tokens of lowercased text, uniform weights,
  smoothing method1 (AdaLabel's public eval script, whose DSTC7 files the CORAL authors reused).
- nltk-sentence: the mean of nltk sentence_bleu with the same settings (as ParlAI does).
BLEU-n is the cumulative score with uniform weights over 1..n-grams.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from coral_cli.metrics.lexical import words

VARIANTS = ("sacrebleu", "nltk-corpus", "nltk-sentence")


def bleu_scores(predictions: Sequence[str], references: Sequence[str], variant: str) -> tuple[dict[str, float], dict[str, Any]]:
    """({'BLEU-1': .., ..., 'BLEU-4': .., 'BLEU': BLEU-4}, settings) on a 0-1 scale."""
    if variant == "sacrebleu":
        from sacrebleu.metrics import BLEU

        scores, signature = {}, ""
        for n in range(1, 5):
            metric = BLEU(max_ngram_order=n, lowercase=True, force=True)  # DailyDialog is pre-tokenised
            scores[f"BLEU-{n}"] = metric.corpus_score(list(predictions), [list(references)]).score / 100
            signature = str(metric.get_signature())
        settings = {"variant": variant, "signature": signature, "tokenize": "13a, lowercased"}
    else:
        from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu, sentence_bleu

        smooth = SmoothingFunction().method1
        hyps = [words(p) for p in predictions]
        refs = [[words(r)] for r in references]
        scores = {}
        for n in range(1, 5):
            weights = tuple([1.0 / n] * n)
            if variant == "nltk-corpus":
                scores[f"BLEU-{n}"] = corpus_bleu(refs, hyps, weights=weights, smoothing_function=smooth)
            else:
                per = [sentence_bleu(r, h, weights=weights, smoothing_function=smooth) for r, h in zip(refs, hyps)]
                scores[f"BLEU-{n}"] = sum(per) / max(1, len(per))
        settings = {"variant": variant, "tokenize": "lowercase + whitespace", "smoothing": "method1",
                    "weights": "uniform over 1..n"}
    scores["BLEU"] = scores["BLEU-4"]
    return scores, settings


def self_bleu(samples: Sequence[Sequence[str]]) -> float:
    """Mean over contexts of each sample's nltk sentence BLEU-4 against the other samples."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    smooth = SmoothingFunction().method1
    values = []
    for group in samples:
        if len(group) < 2:
            continue
        toks = [words(s) for s in group]
        for i, hyp in enumerate(toks):
            others = toks[:i] + toks[i + 1 :]
            values.append(sentence_bleu(others, hyp, smoothing_function=smooth))
    return sum(values) / len(values) if values else 0.0


def bleu_item_stats(predictions: Sequence[str], references: Sequence[str], variant: str) -> list[list[float]]:
    """Per-response statistics from which corpus BLEU-4 of any resample is rebuilt exactly
    (`bleu_from_stats`): sacrebleu's segment statistics [hyp_len, ref_len, matches 1..4, totals
    1..4], nltk's clipped counts in the same layout, or for nltk-sentence the sentence BLEU-4."""
    if variant == "sacrebleu":
        from sacrebleu.metrics import BLEU

        metric = BLEU(max_ngram_order=4, lowercase=True, force=True)
        return [list(map(float, s)) for s in metric._extract_corpus_statistics(list(predictions), [list(references)])]
    from nltk.translate.bleu_score import SmoothingFunction, modified_precision, sentence_bleu

    if variant == "nltk-sentence":
        smooth = SmoothingFunction().method1
        return [[sentence_bleu([words(r)], words(p), smoothing_function=smooth)] for p, r in zip(predictions, references)]
    out = []
    for p, r in zip(predictions, references):
        hyp, ref = words(p), words(r)
        fracs = [modified_precision([ref], hyp, n) for n in range(1, 5)]
        out.append([float(len(hyp)), float(len(ref)), *(float(f.numerator) for f in fracs),
                    *(float(f.denominator) for f in fracs)])
    return out


def bleu_from_stats(stats: Sequence[float], variant: str, count: int) -> float:
    """Corpus BLEU-4 (0-1) of summed `bleu_item_stats` over `count` responses: what
    `bleu_scores(...)['BLEU']` gives on those responses."""
    if variant == "nltk-sentence":
        return float(stats[0]) / max(1, count)
    if variant == "sacrebleu":
        from sacrebleu.metrics import BLEU

        metric = BLEU(max_ngram_order=4, lowercase=True, force=True)
        return metric._compute_score_from_stats([int(round(x)) for x in stats]).score / 100
    import math

    hyp_len, ref_len, matches, totals = stats[0], stats[1], stats[2:6], stats[6:10]
    if matches[0] == 0 or hyp_len == 0:  # nltk corpus_bleu returns 0 without any unigram match
        return 0.0
    # smoothing method1: a zero count of matches becomes epsilon = 0.1
    logs = [math.log((m if m else 0.1) / t) for m, t in zip(matches, totals) if t]
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(sum(logs) / 4)
