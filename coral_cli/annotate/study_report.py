"""The numbers of a study, for the researcher (system names shown, from the manifest).

Likert (the CORAL paper's §5.2): the mean of each aspect per system. Pairwise (ACUTE-Eval): win /
tie / loss per pair, the win rate with ties as half a win, a two-sided exact sign test on the
non-tied judgments, and the length-controlled win rate of AlpacaEval LC (Dubois et al. 2024,
arXiv 2404.04475): a logistic regression of P(first beats second) on the standardised word-length
difference of the two replies, ties as targets of 1/2, read off at zero length difference.
Judgments of all annotators are pooled; every 95 % interval is a bootstrap over contexts (all the
judgments of a drawn context come with it). Agreement is Krippendorff's alpha over the items at
least two annotators answered: ordinal per aspect for Likert, nominal for pairwise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from coral_cli.annotate.agreement import krippendorff_alpha
from coral_cli.annotate.answers import replay
from coral_cli.annotate.study import ANNOTATIONS, ASPECTS, Study, check_annotator, system_pairs
from coral_cli.errors import CoralError, DataError
from coral_cli.metrics.bootstrap import with_replacement
from coral_cli.metrics.lexical import words

SLOPE_RIDGE = 0.01  # keeps the LC fit finite when length alone separates wins from losses


def load_answers(study: Study) -> dict[str, list[dict[str, Any]]]:
    """annotator -> current answers, for every log in STUDY/annotations/."""
    folder = study.folder / ANNOTATIONS
    out = {}
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        answers = list(replay(path).values())
        if answers:
            out[check_annotator(path.stem)] = answers
    return out


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial p-value of `wins` out of `wins + losses` under p = 1/2."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def lc_win_rate(diff: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None) -> float:
    """sigmoid(b0) of the logistic fit target ~ b0 + b1 * diff / sd(diff) (weighted, fractional targets).

    AlpacaEval LC's idea in its simplest form: the win rate the judges would give if both replies
    had the same length. Newton steps on the weighted log-likelihood, a weak ridge on b1 only.
    """
    w = np.ones_like(target, dtype=float) if weight is None else np.asarray(weight, dtype=float)
    y = np.asarray(target, dtype=float)
    if w.sum() == 0:
        return math.nan
    kept = y[w > 0]
    if np.all(kept == kept[0]) and kept[0] in (0.0, 1.0):
        return float(kept[0])  # all wins or all losses: the fit's limit
    sd = float(np.std(diff)) or 1.0
    x = np.stack([np.ones_like(y), np.asarray(diff, dtype=float) / sd], axis=1)  # (J, 2)
    ridge = np.diag([0.0, SLOPE_RIDGE])
    b = np.zeros(2)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(x @ b)))
        grad = x.T @ (w * (y - p)) - ridge @ b
        hess = (x.T * (w * p * (1 - p))) @ x + ridge
        step = np.linalg.solve(hess, grad)
        b += step
        if np.abs(step).max() < 1e-10:
            break
    return float(1.0 / (1.0 + math.exp(-b[0])))


def build_report(study: Study, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The whole report as one JSON-able dict; `metrics` is the flat table the gates read."""
    answers = load_answers(study)
    if not answers:
        raise CoralError(f"no answers in {study.folder / ANNOTATIONS} yet",
                         f"annotate first: coral annotate run {study.folder} --annotator NAME")
    names = study.system_names()
    ctx = {k: i for i, k in enumerate(study.manifest["context_ids"])}
    items = {it["item"]: it for it in study.items}
    for who, rows in answers.items():
        unknown = next((r["item"] for r in rows if r["item"] not in items), None)
        if unknown:
            raise DataError(f"annotations of {who} name item {unknown!r}, which this study lacks",
                            "keep each study's annotations/ with its own items.jsonl")
    draws = with_replacement(len(ctx), resamples, np.random.default_rng(seed)) if resamples else None
    report: dict[str, Any] = {"study": str(study.folder), "mode": study.mode, "n": study.manifest["n"],
                              "seed": study.manifest["seed"], "bootstrap": {"resamples": resamples, "seed": seed},
                              "systems": [{**s, "mean_words": _mean_words(study, s["system"])}
                                          for s in study.manifest["systems"]],
                              "annotators": {who: len(rows) for who, rows in answers.items()}}
    pooled = [r for rows in answers.values() for r in rows]
    if study.mode == "likert":
        report["likert"] = _likert(pooled, items, ctx, names, draws)
        report["per_annotator"] = {who: _likert(rows, items, ctx, names, None) for who, rows in answers.items()}
        report["alpha"] = {a: _alpha(answers, lambda r, a=a: r["ratings"][a], "ordinal") for a in ASPECTS}
    else:
        report["pairwise"] = _pairwise(study, pooled, items, ctx, names, draws)
        report["per_annotator"] = {who: _pairwise(study, rows, items, ctx, names, None) for who, rows in answers.items()}
        report["alpha"] = {"choice": _alpha(answers, lambda r: r["choice"], "nominal")}
    report["metrics"] = _flat(report)
    return report


def _mean_words(study: Study, system: str) -> float:
    """Mean reply length in words over the study's contexts (each context counted once)."""
    replies = {it["id"]: r for it in study.items for s, r in zip(it["systems"], it["replies"]) if s == system}
    return sum(len(words(r)) for r in replies.values()) / max(1, len(replies))


def _interval(sums: np.ndarray, counts: np.ndarray, draws: np.ndarray | None) -> list[float] | None:
    """95 % bootstrap interval of sum / count over resampled contexts."""
    if draws is None:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (draws @ sums) / (draws @ counts)
    values = values[np.isfinite(values)]
    return [float(v) for v in np.percentile(values, [2.5, 97.5])] if len(values) else None


def _likert(rows: list[dict[str, Any]], items: dict, ctx: dict, names: dict, draws: np.ndarray | None) -> dict:
    out = {}
    for system, name in names.items():
        mine = [r for r in rows if items[r["item"]]["systems"] == [system]]
        entry: dict[str, Any] = {"system": system, "answers": len(mine)}
        for aspect in ASPECTS:
            sums, counts = np.zeros(len(ctx)), np.zeros(len(ctx))
            for r in mine:
                c = ctx[items[r["item"]]["id"]]
                sums[c] += r["ratings"][aspect]
                counts[c] += 1
            mean = float(sums.sum() / counts.sum()) if counts.sum() else None
            entry[aspect] = {"mean": mean, "ci": _interval(sums, counts, draws) if mine else None}
        out[name] = entry
    return out


def _pairwise(study: Study, rows: list[dict[str, Any]], items: dict, ctx: dict, names: dict,
              draws: np.ndarray | None) -> list[dict[str, Any]]:
    systems = [s["system"] for s in study.manifest["systems"]]
    out = []
    for i, j in system_pairs(len(systems)):
        first, second = systems[i], systems[j]
        mine = [r for r in rows if items[r["item"]]["systems"] == [first, second]]
        target = np.array([1.0 if r["choice"] == first else 0.0 if r["choice"] == second else 0.5 for r in mine])
        where = np.array([ctx[items[r["item"]]["id"]] for r in mine], dtype=int)
        diff = np.array([len(words(items[r["item"]]["replies"][0])) - len(words(items[r["item"]]["replies"][1]))
                         for r in mine], dtype=float)
        wins, ties = int((target == 1).sum()), int((target == 0.5).sum())
        losses = len(mine) - wins - ties
        # the sign test counts contexts, not judgments: two annotators of one context are not two trials
        per_ctx_sum = np.bincount(where, weights=target, minlength=len(ctx))
        per_ctx_n = np.bincount(where, minlength=len(ctx))
        means = per_ctx_sum[per_ctx_n > 0] / per_ctx_n[per_ctx_n > 0]
        entry: dict[str, Any] = {"a": names[first], "b": names[second], "judgments": len(mine), "wins": wins,
                                 "ties": ties, "losses": losses, "win_rate": float(target.mean()) if len(mine) else None,
                                 "contexts_won": int((means > 0.5).sum()), "contexts_lost": int((means < 0.5).sum()),
                                 "sign_test_p": sign_test(int((means > 0.5).sum()), int((means < 0.5).sum())),
                                 "lc_win_rate": lc_win_rate(diff, target) if len(mine) else None}
        if draws is not None and len(mine):
            sums = np.bincount(where, weights=target, minlength=len(ctx))
            counts = np.bincount(where, minlength=len(ctx)).astype(float)
            entry["win_rate_ci"] = _interval(sums, counts, draws)
            lc = np.array([lc_win_rate(diff, target, d[where]) for d in draws])
            lc = lc[np.isfinite(lc)]
            entry["lc_win_rate_ci"] = [float(v) for v in np.percentile(lc, [2.5, 97.5])] if len(lc) else None
        out.append(entry)
    return out


def _alpha(answers: dict[str, list[dict[str, Any]]], value, metric: str) -> dict[str, Any]:
    """alpha over the items at least two annotators answered (None below two such items' values)."""
    by_item: dict[str, list] = {}
    for rows in answers.values():
        for r in rows:
            by_item.setdefault(r["item"], []).append(value(r))
    units = [v for v in by_item.values() if len(v) >= 2]
    return {"alpha": krippendorff_alpha(units, metric) if units else None, "items": len(units), "metric": metric}


def _flat(report: dict[str, Any]) -> dict[str, float]:
    """Gate names: likert ASPECT/NAME (and ASPECT alone with one system), alpha/ASPECT; pairwise
    win_rate/A_vs_B, lc_win_rate/A_vs_B, and win_rate, lc_win_rate for the first pair (the first
    two -p files), alpha."""
    flat: dict[str, float] = {}
    if report["mode"] == "likert":
        for name, entry in report["likert"].items():
            for aspect in ASPECTS:
                if entry[aspect]["mean"] is not None:
                    flat[f"{aspect}/{name}"] = entry[aspect]["mean"]
                    if len(report["likert"]) == 1:
                        flat[aspect] = entry[aspect]["mean"]
        for aspect, a in report["alpha"].items():
            if a["alpha"] is not None:
                flat[f"alpha/{aspect}"] = a["alpha"]
        return flat
    for k, pair in enumerate(report["pairwise"]):
        for key in ("win_rate", "lc_win_rate"):
            if pair[key] is not None:
                flat[f"{key}/{pair['a']}_vs_{pair['b']}"] = pair[key]
                if k == 0:
                    flat[key] = pair[key]
    if report["alpha"]["choice"]["alpha"] is not None:
        flat["alpha"] = report["alpha"]["choice"]["alpha"]
    return flat
