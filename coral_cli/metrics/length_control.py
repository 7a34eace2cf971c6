"""Length under control: learned evaluators (MAUDE-style retrievers, the training reward f_R) tend
to score longer replies higher, so a generator trained against one can gain by talking more (a
CORAL run's replies grew to 1.5x the references'). Two views keep length apart from quality.

Per report (`length_summary`): the mean reply length (words) against the references', with an
alarm outside [0.5x, 1.5x], and the Pearson correlation over the contexts of each reply's length
with each learned score (R3, MAUDE-*).

Per comparison of row B with row A on the same contexts (`length_matched`), for each per-item
metric (METEOR, MAUDE-*, R3):
- matched: buckets of reply length, edges at the deciles of both rows' pooled word lengths; in
  each bucket mean(B) - mean(A), combined with weights = A's share of its replies in the bucket.
  Buckets where either row has no reply are dropped and the weights renormalised; `coverage` is
  the share of A's replies in the kept buckets. A bucket can span several lengths, and the longer
  row sits higher within it: `length_gap`, the same matched difference of the lengths themselves,
  says how many words apart the matched rows still are (a strong length slope times that gap is
  left in the matched difference; the adjusted one removes its linear part).
- adjusted (learned scores only): the system coefficient of the OLS fit
  score ~ 1 + system + length over both rows' items: AlpacaEval's length-controlled idea
  (Dubois et al. 2024, arXiv 2404.04475) in its linear form.
Intervals follow `metrics.bootstrap`: R seeded resamples of the contexts with replacement, the
same draw for both rows; percentile 95 % interval; p = 2 (1 + #{far side of 0}) / (1 + R).
The bucket edges stay those of the full data in every resample: they define the estimand, and
re-placing deciles on tied integer lengths would add jitter that is not sampling noise.
Corpus metrics (BLEU, Dist-n, self-BLEU) have no per-item score to bucket: not length-matched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from coral_cli.errors import ConfigError, CoralError
from coral_cli.metrics.bootstrap import ALPHA, MIN_RESAMPLES, with_replacement
from coral_cli.metrics.lexical import words

LONG_RATIO, SHORT_RATIO = 1.5, 0.5  # mean reply length vs the references' outside this: a length alarm
BUCKETS = 10  # deciles of the pooled lengths
_CHUNK = 100  # resamples whose (chunk, contexts) weights are held at once


def learned_scores(items: dict[str, Any]) -> list[str]:
    """The learned per-item scores an item set or report metrics carry: MAUDE-* and R3."""
    return [k for k in items if k.startswith("MAUDE-")] + (["R3"] if "R3" in items else [])


def per_item_metrics(items: dict[str, Any]) -> list[str]:
    """Metrics with one score per context that can be length-matched (Avg. Len is the length)."""
    return (["METEOR"] if "METEOR" in items else []) + learned_scores(items)


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r; None when either side is constant or has fewer than 2 values."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) < 2:
        return None
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / den if den > 0 else None


def word_lengths(texts: Sequence[str]) -> np.ndarray:
    return np.array([len(words(t)) for t in texts], dtype=np.float64)


def length_summary(responses: Sequence[str], references: Sequence[str] | None,
                   scores: dict[str, Sequence[float]]) -> dict[str, Any]:
    """{mean_words, reference_mean_words, ratio, corr: {score name: r(length, score)}}; the
    reference entries are None without references."""
    lengths = word_lengths(responses)
    mean = float(lengths.mean()) if len(lengths) else 0.0
    ref = float(word_lengths(references).mean()) if references else None
    return {"mean_words": mean, "reference_mean_words": ref, "ratio": mean / ref if ref else None,
            "corr": {name: pearson(lengths, s) for name, s in scores.items()}}


def length_warnings(summary: dict[str, Any]) -> list[str]:
    """The length alarm of a `length_summary`, as one sentence (none when in range or no references)."""
    ratio = summary.get("ratio")
    if ratio is None or SHORT_RATIO <= ratio <= LONG_RATIO:
        return []
    where = f"above the {LONG_RATIO}x" if ratio > LONG_RATIO else f"under the {SHORT_RATIO}x"
    return [f"replies average {summary['mean_words']:.1f} words, {ratio:.2f}x the references' "
            f"{summary['reference_mean_words']:.1f}, {where} alarm: learned evaluators and the reward score "
            "length too, so compare rows with 'coral evaluate compare --length-matched'"]


def length_matched(a: dict[str, Any], b: dict[str, Any], resamples: int = 0, seed: int = 0) -> dict[str, Any]:
    """Row B against row A (item sets of `coral evaluate --out`) with length held apart:
    {mean_words: [a, b], edges, coverage, length_gap, metrics: {name: {raw, matched[, adjusted]}}}, each
    estimate {diff, ci, p} (ci and p None without resamples). Bucket k holds the lengths in
    [edges[k-1], edges[k])."""
    if 0 < resamples < MIN_RESAMPLES:
        raise ConfigError(f"{resamples} resamples are too few for a 95 % interval or a p-value",
                          f"use at least {MIN_RESAMPLES} (1000 is usual)")
    if any("responses" not in x for x in (a, b)):
        raise CoralError("the per-context scores have no replies to measure", "re-run 'coral evaluate ... --out REPORT'")
    if "runs" in a or "runs" in b or a["count"] != b["count"] or len(a["responses"]) != len(b["responses"]):
        raise CoralError("the two reports do not score the same contexts in the same order",
                         "compare reports of one split and one max_pairs (e.g. rows of one table)")
    if a["count"] == 0:
        raise CoralError("the reports have no predictions", "evaluate some predictions first")
    la, lb = word_lengths(a["responses"]), word_lengths(b["responses"])
    edges = np.unique(np.quantile(np.concatenate([la, lb]), np.linspace(0, 1, BUCKETS + 1)[1:-1]))
    fit = _Fit(la, lb, edges)
    names = [m for m in per_item_metrics(a) if m in b]
    learned = set(learned_scores(a))
    full = np.ones((1, len(la)))
    gap, coverage = (float(x[0]) for x in fit.matched(full, la, lb))
    draws = list(_draws(len(la), resamples, seed)) if resamples else []
    out: dict[str, Any] = {}
    for name in names:
        sa, sb = np.asarray(a[name], dtype=np.float64), np.asarray(b[name], dtype=np.float64)
        views = {"raw": fit.raw, "matched": lambda w, x, y: fit.matched(w, x, y)[0]}
        if name in learned:
            views["adjusted"] = fit.adjusted
        out[name] = {view: _estimate(f(full, sa, sb)[0], [f(w, sa, sb) for w in draws])
                     for view, f in views.items()}
    return {"mean_words": [float(la.mean()), float(lb.mean())], "edges": [float(e) for e in edges],
            "coverage": coverage, "length_gap": _number(gap), "metrics": out}


def not_length_matched(names: Sequence[str], matched: Sequence[str]) -> list[str]:
    """The report metrics a length-matched comparison leaves as they are: the corpus-level ones."""
    return [n for n in names if n not in matched and n != "avg_len"]


def _draws(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """(chunk, n) context draw counts, as `metrics.bootstrap` draws them (seeded, shared by both rows)."""
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, _CHUNK):
        yield with_replacement(n, min(_CHUNK, resamples - start), rng)


def _estimate(diff: float, chunks: list[np.ndarray]) -> dict[str, Any]:
    """{diff, ci, p}: the full-data difference and, given resampled differences, their percentile
    interval and two-sided p-value (as `bootstrap.paired_bootstrap` gives for means)."""
    boot = np.concatenate(chunks) if chunks else np.array([])
    boot = boot[np.isfinite(boot)]
    if not len(boot):
        return {"diff": _number(diff), "ci": None, "p": None}
    ci = [float(x) for x in np.percentile(boot, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])]
    far = min(int(np.sum(boot <= 0)), int(np.sum(boot >= 0)))
    return {"diff": _number(diff), "ci": ci, "p": min(1.0, 2 * (1 + far) / (1 + len(boot)))}


def _number(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


class _Fit:
    """The three differences of B - A under (R, n) context weights (draw counts; ones = full data)."""

    def __init__(self, la: np.ndarray, lb: np.ndarray, edges: np.ndarray) -> None:
        k = len(edges) + 1
        self.ha = np.eye(k)[np.searchsorted(edges, la, side="right")]  # (n, K) one-hot buckets
        self.hb = np.eye(k)[np.searchsorted(edges, lb, side="right")]
        centred = np.concatenate([la, lb]) - np.concatenate([la, lb]).mean()
        system = np.repeat([0.0, 1.0], len(la))
        self.x = np.stack([np.ones_like(centred), system, centred], 1)  # (2n, 3): 1, system, length
        self.xx = (self.x[:, :, None] * self.x[:, None, :]).reshape(len(centred), 9)  # (2n, 9)

    def raw(self, w: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
        return (w @ sb - w @ sa) / w.sum(1)

    def matched(self, w: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(R,) bucket-matched differences and (R,) shares of A's replies in the kept buckets."""
        na, nb = w @ self.ha, w @ self.hb  # (R, K) replies per bucket
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = (w @ (self.hb * sb[:, None])) / nb - (w @ (self.ha * sa[:, None])) / na
            kept = np.where((na > 0) & (nb > 0), na, 0.0)
            diff = np.where(kept > 0, kept * gap, 0.0).sum(1) / kept.sum(1)
        return np.where(kept.sum(1) > 0, diff, np.nan), kept.sum(1) / na.sum(1)

    def adjusted(self, w: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
        """The system coefficient of weighted least squares score ~ 1 + system + length (pinv: a
        resample of one length still identifies it, as the plain mean difference)."""
        w2 = np.hstack([w, w])  # a context's weight counts for both rows' replies to it
        xtx = (w2 @ self.xx).reshape(-1, 3, 3)
        xty = w2 @ (self.x * np.concatenate([sa, sb])[:, None])  # (R, 3)
        return (np.linalg.pinv(xtx) @ xty[:, :, None])[:, 1, 0]
