"""Paired tests of row B against row A on the same test contexts: is B's metric really different
from A's, or is the gap noise?

Means of per-context scores (Avg. Len, METEOR, MAUDE, R3) and BLEU get a 95 % paired-bootstrap
interval (Koehn 2004; Efron & Tibshirani 1993): each resample draws N context indices with
replacement, the same for both rows, and recomputes the metric on the resample (BLEU rebuilt from
per-context n-gram counts, so a corpus metric is resampled as a corpus, not averaged). The interval
is the 2.5th-97.5th percentile of the B - A differences; for the means the two-sided p-value is
2 (1 + #{differences on the far side of 0}) / (1 + R), never 0.

BLEU and Dist-n are corpus metrics. Their p-values come from paired approximate randomisation
(Noreen 1989; Riezler & Maxwell 2005): each of R rounds swaps the two rows' replies on each context
with probability 1/2 and recomputes the difference; p = (1 + #{|d*| >= |d|}) / (1 + R), valid under
the null that the two rows' replies are exchangeable. Dist-n gets no interval: its distinct count is
a union, so a context drawn twice adds n-grams to the total and none to the distinct count, and the
half-sampling fix covered anywhere from 88 to 100 % in simulation. BLEU keeps its bootstrap
interval, whose coverage tests/test_bootstrap.py checks by simulation.

Several training seeds per row (`pool_items`) add a second source of chance: which seeds were
trained. Resampling contexts alone leaves it out and gives too narrow intervals, so the bootstrap
resamples both levels of this crossed design (Owen 2007, the pigeonhole bootstrap): each row's
seeds with replacement, independently per row, and the contexts, shared by both rows. The
randomisation first deals the two rows' runs at random into groups of the rows' sizes, then swaps
per context. With 2-3 seeds the seed variance is itself poorly known (the bootstrap sees (k-1)/k of
it): read such intervals as a guide, and the table's ± sd beside them.

The per-context numbers live in a side file next to the report (`<report>.items.json`, written by
`coral evaluate --out` and the table runner), not in the summary JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coral_cli.errors import ConfigError, CoralError
from coral_cli.metrics.bleu import bleu_from_stats
from coral_cli.metrics.lexical import words

ITEMS_VERSION = 1
MEAN_METRICS = ("avg_len", "METEOR")  # + every MAUDE-* and R3: means of per-context scores
DISTINCT = ("Dist-1", "Dist-2")  # no interval: resampling biases a distinct ratio
CORPUS = ("BLEU", *DISTINCT)  # p-value by approximate randomisation
ALPHA = 0.05
MIN_RESAMPLES = 100  # fewer cannot place a 2.5th percentile or a p-value below 0.05 with any care
_CHUNK = 100  # resamples whose (chunk, runs * contexts) weights are held at once


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
    """{metric: {a, b, diff, ci: [lo, hi] | None, p, p_from, significant}} for every metric both
    item sets carry (or those in `metrics`); B - A on the full set is `diff`. `resamples` rounds
    of the bootstrap (intervals; p of the means) and of the randomisation (p of BLEU and Dist-n).
    Pooled item sets (`pool_items`) resample their seeds too and add `seeds: [k_a, k_b]`."""
    if resamples < MIN_RESAMPLES:
        raise ConfigError(f"{resamples} resamples are too few for a 95 % interval or a p-value",
                          f"use at least {MIN_RESAMPLES} (1000 is usual)")
    runs_a, runs_b = _runs(a), _runs(b)
    n = _check_pair(runs_a[0], runs_b[0])
    names = [m for m in metric_names(runs_a[0]) if all(m in metric_names(r) for r in runs_a + runs_b)
             and (metrics is None or m in metrics)]
    ka, kb = len(runs_a), len(runs_b)
    stack = _Stack(runs_a + runs_b, names)
    rng = np.random.default_rng(seed)
    boot = _differences(stack, [m for m in names if m not in DISTINCT], _bootstrap_weights(ka, kb, n, resamples, rng))
    rand = _differences(stack, [m for m in names if m in CORPUS], _randomised_weights(ka, kb, n, resamples, rng))
    in_a = np.repeat([1.0, 0.0], [ka * n, kb * n])[None, :]
    out = {}
    for name in names:
        va, vb = float(stack.value(name, in_a)[0]), float(stack.value(name, 1 - in_a)[0])
        diff = vb - va
        ci = None
        if name in boot:
            ci = [float(x) for x in np.percentile(boot[name], [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])]
        if name in CORPUS:
            p = (1 + int(np.sum(np.abs(rand[name]) >= abs(diff) - 1e-12))) / (1 + resamples)
        else:
            far = min(int(np.sum(boot[name] <= 0)), int(np.sum(boot[name] >= 0)))
            p = min(1.0, 2 * (1 + far) / (1 + resamples))
        out[name] = {"a": va, "b": vb, "diff": diff, "ci": ci, "p": p,
                     "p_from": "randomisation" if name in CORPUS else "bootstrap", "significant": p < ALPHA,
                     **({"seeds": [ka, kb]} if max(ka, kb) > 1 else {})}
    return out


def _check_pair(a: dict[str, Any], b: dict[str, Any]) -> int:
    n = a["count"]
    if b["count"] != n or (a.get("references") and b.get("references") and a["references"] != b["references"]):
        raise CoralError("the two reports do not score the same contexts in the same order",
                         "compare reports of one split and one max_pairs (e.g. rows of one table)")
    if n == 0:
        raise CoralError("the reports have no predictions", "evaluate some predictions first")
    if "bleu" in a and "bleu" in b and a["bleu"]["variant"] != b["bleu"]["variant"]:
        raise CoralError(f"the reports' BLEU variants differ ({a['bleu']['variant']} vs {b['bleu']['variant']})",
                         "evaluate both with the same --bleu")
    return n


def _bootstrap_weights(ka: int, kb: int, n: int, resamples: int,
                       rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(chunk, (ka + kb) n) weights of A's and of B's runs x contexts: the contexts drawn with
    replacement (shared), each row's seeds drawn with replacement (its own); one seed: weight 1."""
    for start in range(0, resamples, _CHUNK):
        r = min(_CHUNK, resamples - start)
        ctx = with_replacement(n, r, rng)[:, None, :]  # (r, 1, n)
        wa = (with_replacement(ka, r, rng)[:, :, None] * ctx).reshape(r, ka * n)
        wb = (with_replacement(kb, r, rng)[:, :, None] * ctx).reshape(r, kb * n)
        yield np.hstack([wa, np.zeros_like(wb)]), np.hstack([np.zeros_like(wa), wb])


def _randomised_weights(ka: int, kb: int, n: int, resamples: int,
                        rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """0/1 weights of the pseudo-rows A* and B*: the ka + kb runs dealt at random into groups of
    ka and kb, then on each context the two groups' replies swapped with probability 1/2."""
    for start in range(0, resamples, _CHUNK):
        r = min(_CHUNK, resamples - start)
        group = rng.random((r, ka + kb)).argsort(1).argsort(1) < ka  # (r, runs): dealt to A*
        swap = rng.random((r, n)) < 0.5  # (r, n)
        wa = (group[:, :, None] != swap[:, None, :]).reshape(r, (ka + kb) * n).astype(np.float64)
        yield wa, 1.0 - wa


def _differences(stack: _Stack, names: Sequence[str],
                 weights: Iterator[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """(R,) differences B* - A* of each metric over the weight chunks."""
    parts: dict[str, list[np.ndarray]] = {m: [] for m in names}
    for wa, wb in weights if names else ():
        for m in names:
            parts[m].append(stack.value(m, wb) - stack.value(m, wa))
    return {m: np.concatenate(v) for m, v in parts.items()}


def with_replacement(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) counts of how often each context is drawn in n draws with replacement."""
    idx = rng.integers(0, n, size=(resamples, n))
    counts = np.bincount((idx + n * np.arange(resamples)[:, None]).ravel(), minlength=resamples * n)
    return counts.reshape(resamples, n).astype(np.float64)


def pool_items(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The item sets of several runs (training seeds) on the same contexts as one row: the runs are
    kept apart (`runs`) so that `paired_bootstrap` resamples seeds as well as contexts; the row's
    full-set value pools every run's replies (means over all, corpus BLEU and Dist-n of all)."""
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    if any(r["count"] != first["count"] or r.get("references") != first.get("references") for r in runs):
        raise CoralError("the seeds' reports do not score the same contexts", "evaluate every seed on one split")
    return {"count": first["count"], "references": first.get("references"), "runs": list(runs)}


def _runs(items: dict[str, Any]) -> list[dict[str, Any]]:
    return list(items.get("runs") or [items])


def metric_names(items: dict[str, Any]) -> list[str]:
    """The metrics an item set can rebuild, in report order."""
    items = _runs(items)[0]
    names = [m for m in MEAN_METRICS if m in items]
    if "bleu" in items:
        names.append("BLEU")
    if "responses" in items:
        names += list(DISTINCT)
    return names + [k for k in items if k.startswith("MAUDE-")] + (["R3"] if "R3" in items else [])


def metric_values(items: dict[str, Any], name: str, counts: np.ndarray) -> np.ndarray:
    """(R,) values of `name` on R resamples given as (R, N) draw counts."""
    return _Stack([items], [name]).value(name, counts)


class _Stack:
    """The item sets of k runs on the same n contexts as one list of k n items (run-major), so that
    a (R, k n) weight matrix selects any mix of runs and contexts."""

    def __init__(self, runs: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
        self.means = {m: np.concatenate([np.asarray(r[m], dtype=np.float64) for r in runs])
                      for m in names if m not in CORPUS}
        if "BLEU" in names:
            self.variant = runs[0]["bleu"]["variant"]
            self.stats = np.concatenate([np.asarray(r["bleu"]["stats"], dtype=np.float64) for r in runs])  # (k n, K)
        self.responses = [x for r in runs for x in r.get("responses", [])]
        self.grams: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, int]] = {}

    def value(self, name: str, counts: np.ndarray) -> np.ndarray:
        """(R,) values of `name` on R weightings (R, k n) of the items."""
        replies = counts.sum(1)
        if name == "BLEU":
            sums = counts @ self.stats  # (R, K)
            return np.array([bleu_from_stats(row, self.variant, int(round(c))) for row, c in zip(sums, replies)])
        if name in DISTINCT:
            return self._distinct(int(name[-1]), counts)
        return counts @ self.means[name] / np.maximum(replies, 1e-12)

    def _distinct(self, order: int, counts: np.ndarray) -> np.ndarray:
        """Dist-n of each weighting: distinct n-grams among the drawn replies / all their n-grams
        (a reply drawn twice adds its n-grams twice to the total, none to the distinct)."""
        if order not in self.grams:
            ids: dict[tuple[str, ...], int] = {}
            gram, item, per_item = [], [], np.zeros(len(self.responses))
            for i, r in enumerate(self.responses):
                w = words(r)
                grams = [tuple(w[j:j + order]) for j in range(len(w) - order + 1)]
                per_item[i] = len(grams)
                for g in set(grams):
                    gram.append(ids.setdefault(g, len(ids)))
                    item.append(i)
            self.grams[order] = (np.array(gram, dtype=np.int64), np.array(item, dtype=np.int64), per_item, len(ids))
        gram_a, item_a, per_item, n_ids = self.grams[order]
        totals = counts @ per_item
        distinct = np.zeros(len(counts))
        for s in range(0, len(counts), _CHUNK):  # (chunk, pairs) bools at a time
            drawn = counts[s:s + _CHUNK, item_a] > 0
            hit = np.zeros((drawn.shape[0], max(1, n_ids)), dtype=bool)
            rows, cols = np.nonzero(drawn)
            hit[rows, gram_a[cols]] = True
            distinct[s:s + _CHUNK] = hit.sum(1)
        return np.where(totals > 0, distinct / np.maximum(totals, 1), 0.0)
