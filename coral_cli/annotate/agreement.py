"""Krippendorff's alpha: agreement among any number of annotators with missing answers.

alpha = 1 - D_o / D_e from the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's
Alpha-Reliability"): each unit with m >= 2 values adds 1 / (m - 1) for every ordered pair of its
values from different annotators; units with fewer than two values are unpairable and dropped.
The study report uses the ordinal metric for the 0/1/2 Likert aspects and the nominal metric for
pairwise choices (A / B / tie are categories, not a scale).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

METRICS = ("nominal", "ordinal", "interval")


def krippendorff_alpha(units: Sequence[Sequence[Hashable | None]], metric: str = "nominal") -> float | None:
    """alpha over `units`, each the values its annotators gave (None = not answered).

    Returns None when there is nothing to compare: fewer than two pairable values, or one value
    only (no expected disagreement). Ordinal and interval values must be sortable numbers.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    pairable = [[v for v in unit if v is not None] for unit in units]
    pairable = [u for u in pairable if len(u) >= 2]
    values = sorted({v for u in pairable for v in u}) if metric != "nominal" else list(dict.fromkeys(v for u in pairable for v in u))
    if len(values) < 2:
        return None
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))  # coincidences o_ck
    for unit in pairable:
        counts = np.bincount([index[v] for v in unit], minlength=len(values)).astype(float)
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(unit) - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    delta = _delta(metric, values, n_c)
    observed = (o * delta).sum() / n
    expected = (np.outer(n_c, n_c) * delta).sum() / (n * (n - 1))
    return float(1.0 - observed / expected) if expected > 0 else None


def _delta(metric: str, values: list, n_c: np.ndarray) -> np.ndarray:
    """(V, V) squared differences delta^2_ck of the metric (Krippendorff 2011, §D)."""
    k = len(values)
    if metric == "nominal":
        return 1.0 - np.eye(k)
    if metric == "interval":
        v = np.asarray(values, dtype=float)
        return (v[:, None] - v[None, :]) ** 2
    cum = np.concatenate([[0.0], np.cumsum(n_c)])  # ordinal: ranks by the marginal frequencies
    d = np.zeros((k, k))
    for c in range(k):
        for j in range(c, k):
            d[c, j] = d[j, c] = (cum[j + 1] - cum[c] - (n_c[c] + n_c[j]) / 2) ** 2
    return d
