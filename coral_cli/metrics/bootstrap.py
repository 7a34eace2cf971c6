"""Paired bootstrap over test contexts (Koehn 2004; Efron & Tibshirani 1993): is row B's metric
really different from row A's on the same contexts, or is the gap noise?

Each resample draws N context indices with replacement, the same indices for both reports, and
recomputes every metric on that resample: means of per-context scores (Avg. Len, METEOR, MAUDE,
R3) and BLEU rebuilt from per-context n-gram counts, so a corpus metric is resampled as a corpus,
not averaged. The 95 % interval is the 2.5th-97.5th percentile of the B - A differences; the
two-sided p-value is twice the smaller share of differences on either side of 0.

Dist-n is the exception. A context drawn twice adds its n-grams twice to the total and none to the
distinct count, so with-replacement resamples deflate every distinct ratio and shift the
difference: the interval can miss the observed difference. Dist-n is therefore resampled by
half-sampling (McCarthy 1969; Politis & Romano 1994): each resample draws N/2 contexts without
replacement, the same for both reports. For a mean, a half-sample has the variance of a full
sample, N/2 draws times the finite-population factor 1/2; the half-sample differences, centred on
their own mean and shifted to the observed difference, give the interval and p-value.

The per-context numbers live in a side file next to the report (`<report>.items.json`, written by
`coral evaluate --out` and the table runner), not in the summary JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coral_cli.errors import CoralError
from coral_cli.metrics.bleu import bleu_from_stats
from coral_cli.metrics.lexical import words

ITEMS_VERSION = 1
MEAN_METRICS = ("avg_len", "METEOR")  # + every MAUDE-* and R3: means of per-context scores
DISTINCT = ("Dist-1", "Dist-2")  # half-sampled: duplicates deflate a distinct ratio
ALPHA = 0.05


def items_path(report: str | Path) -> Path:
    """runs/x/test-eval.json -> runs/x/test-eval.items.json"""
    report = Path(report)
    return report.with_name(f"{report.stem}.items.json")


def write_items(path: Path, items: dict[str, Any]) -> None:
    from coral_cli.atomic import atomic_write_text

    atomic_write_text(path, json.dumps({"version": ITEMS_VERSION, **items}, ensure_ascii=False) + "\n")


def read_items(report: str | Path) -> dict[str, Any]:
    path = items_path(report)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CoralError(f"no per-context scores next to {report} ({path.name} is missing)",
                         "re-run 'coral evaluate ... --out REPORT' (or the table) with this coral version") from None
    except (OSError, ValueError) as exc:
        raise CoralError(f"cannot read {path}: {exc}", "re-run 'coral evaluate ... --out REPORT'") from None
    if items.get("version") != ITEMS_VERSION:
        raise CoralError(f"{path} was written by another coral version", "re-run 'coral evaluate ... --out REPORT'")
    return items


def paired_bootstrap(a: dict[str, Any], b: dict[str, Any], resamples: int = 1000, seed: int = 0,
                     metrics: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """{metric: {a, b, diff, ci: [lo, hi], p, significant}} for every metric both item sets carry
    (or those in `metrics`); B - A on the full set is `diff`, the interval and p come from
    `resamples` paired resamples."""
    n = a["count"]
    if b["count"] != n or (a.get("references") and b.get("references") and a["references"] != b["references"]):
        raise CoralError("the two reports do not score the same contexts in the same order",
                         "compare reports of one split and one max_pairs (e.g. rows of one table)")
    if n == 0:
        raise CoralError("the reports have no predictions", "evaluate some predictions first")
    rng = np.random.default_rng(seed)
    counts = with_replacement(n, resamples, rng)
    halves, scale = half_samples(n, resamples, rng)
    full = np.ones((1, n))
    names = [m for m in metric_names(a) if m in metric_names(b) and (metrics is None or m in metrics)]
    out = {}
    for name in names:
        va, vb = (metric_values(x, name, full)[0] for x in (a, b))
        if name in DISTINCT:
            d = metric_values(b, name, halves) - metric_values(a, name, halves)
            d = (vb - va) + scale * (d - d.mean())
        else:
            d = metric_values(b, name, counts) - metric_values(a, name, counts)
        lo, hi = np.percentile(d, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
        p = min(1.0, 2 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0))))
        out[name] = {"a": va, "b": vb, "diff": vb - va, "ci": [float(lo), float(hi)], "p": p,
                     "significant": p < ALPHA}
    return out


def with_replacement(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) counts of how often each context is drawn in n draws with replacement."""
    idx = rng.integers(0, n, size=(resamples, n))
    counts = np.bincount((idx + n * np.arange(resamples)[:, None]).ravel(), minlength=resamples * n)
    return counts.reshape(resamples, n).astype(np.float64)


def half_samples(n: int, resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(resamples, n) 0/1 masks of m = n // 2 contexts drawn without replacement, and the factor
    that gives their deviations the spread of a full n-sample: a half-sample mean has variance
    S^2 (n - m) / (m n) against the bootstrap's S^2 (n - 1) / n^2, so scale = sqrt(m (n - 1) / (n (n - m))),
    sqrt((n - 1) / n) for even n. One context: no spread (scale 0)."""
    m = max(1, n // 2)
    order = np.argsort(rng.random((resamples, n)), axis=1)
    mask = np.zeros((resamples, n))
    np.put_along_axis(mask, order[:, :m], 1.0, axis=1)
    scale = float(np.sqrt(m * (n - 1) / (n * (n - m)))) if n > 1 else 0.0
    return mask, scale


def pool_items(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The item sets of several runs (training seeds) on the same contexts as one: a drawn context
    brings every run's reply. Per-context scores are averaged over the runs, BLEU statistics
    summed (corpus BLEU of all runs' replies), and each context keeps all its replies for Dist-n."""
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    if any(r["count"] != first["count"] or r.get("references") != first.get("references") for r in runs):
        raise CoralError("the seeds' reports do not score the same contexts", "evaluate every seed on one split")
    out: dict[str, Any] = {"count": first["count"], "references": first.get("references"),
                           "responses": [[x for r in runs for x in _replies(r["responses"][i])]
                                         for i in range(first["count"])]}
    for name in metric_names(first):
        if name in MEAN_METRICS or name.startswith("MAUDE-") or name == "R3":
            out[name] = np.mean([r[name] for r in runs], axis=0).tolist()
    if "bleu" in first:
        out["bleu"] = {"variant": first["bleu"]["variant"],
                       "stats": np.sum([r["bleu"]["stats"] for r in runs], axis=0).tolist(), "runs": len(runs)}
    return out


def _replies(x: str | Sequence[str]) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def metric_names(items: dict[str, Any]) -> list[str]:
    """The metrics an item set can rebuild, in report order."""
    names = [m for m in MEAN_METRICS if m in items]
    if "bleu" in items:
        names.append("BLEU")
    if "responses" in items:
        names += list(DISTINCT)
    return names + [k for k in items if k.startswith("MAUDE-")] + (["R3"] if "R3" in items else [])


def metric_values(items: dict[str, Any], name: str, counts: np.ndarray) -> np.ndarray:
    """(R,) values of `name` on R resamples given as (R, N) draw counts."""
    n = counts.shape[1]
    if name == "BLEU":
        sums = counts @ np.asarray(items["bleu"]["stats"], dtype=np.float64)  # (R, K)
        replies = n * items["bleu"].get("runs", 1)  # pooled runs: nltk-sentence averages over every reply
        return np.array([bleu_from_stats(row, items["bleu"]["variant"], replies) for row in sums])
    if name in DISTINCT:
        return _distinct(items["responses"], int(name[-1]), counts)
    return counts @ np.asarray(items[name], dtype=np.float64) / n


def _distinct(responses: Sequence[str | Sequence[str]], order: int, counts: np.ndarray, chunk: int = 100) -> np.ndarray:
    """Dist-n of each resample: distinct n-grams among the drawn responses / all their n-grams
    (a response drawn twice adds its n-grams twice to the total, none to the distinct). A context
    may hold several replies (pooled seeds)."""
    ids: dict[tuple[str, ...], int] = {}
    gram, item, per_item = [], [], np.zeros(len(responses))
    for i, r in enumerate(responses):
        grams = [tuple(w[j:j + order]) for x in _replies(r) for w in [words(x)] for j in range(len(w) - order + 1)]
        per_item[i] = len(grams)
        for g in set(grams):
            gram.append(ids.setdefault(g, len(ids)))
            item.append(i)
    gram_a, item_a = np.array(gram, dtype=np.int64), np.array(item, dtype=np.int64)
    totals = counts @ per_item
    distinct = np.zeros(len(counts))
    for s in range(0, len(counts), chunk):  # (chunk, pairs) bools at a time
        drawn = counts[s:s + chunk, item_a] > 0
        hit = np.zeros((drawn.shape[0], max(1, len(ids))), dtype=bool)
        rows, cols = np.nonzero(drawn)
        hit[rows, gram_a[cols]] = True
        distinct[s:s + chunk] = hit.sum(1)
    return np.where(totals > 0, distinct / np.maximum(totals, 1), 0.0)
