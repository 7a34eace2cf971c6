"""Retrieval metrics on a score matrix: R_n@k, MRR, ROC-AUC, accuracy.

Ties count against the true response (its rank is 1 + the number of candidates scoring at
least as high), so a constant scorer gets R10@1 = 0, not 1.
"""

from __future__ import annotations

import numpy as np


def ranks(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, C) scores, (N,) index of the true candidate -> (N,) 1-based pessimistic ranks."""
    scores = np.asarray(scores, dtype=np.float64)
    true = scores[np.arange(len(scores)), labels][:, None]
    others = np.ones_like(scores, dtype=bool)
    others[np.arange(len(scores)), labels] = False
    return 1 + ((scores >= true) & others).sum(1)


def recall_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose true candidate ranks within the top k."""
    return float((ranks(scores, labels) <= k).mean())


def mrr(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean reciprocal rank of the true candidate."""
    return float((1.0 / ranks(scores, labels)).mean())


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U)."""
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    values = np.concatenate([pos, neg])
    order = values.argsort(kind="mergesort")
    sorted_vals = values[order]
    rank = np.empty(len(values))
    # average ranks over ties
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    rank[order] = np.repeat(avg, counts)
    u = rank[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def accuracy(pos: np.ndarray, neg: np.ndarray, threshold: float = 0.5) -> float:
    """Balanced binary accuracy at `threshold`."""
    correct = (np.asarray(pos) > threshold).sum() + (np.asarray(neg) <= threshold).sum()
    return float(correct / (len(pos) + len(neg)))
