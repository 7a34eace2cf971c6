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
