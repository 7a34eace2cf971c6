"""Random negatives for retriever training and evaluation: uniform draws from an utterance pool,
never the true response (paper §4.2)."""

from __future__ import annotations

import numpy as np


def sample_negatives(rng: np.random.Generator, pool_size: int, positives: np.ndarray, k: int) -> np.ndarray:
    """(N, k) pool indices, each row distinct from its positive's pool index (-1 = not in pool)."""
    if pool_size < 2:
        raise ValueError("the utterance pool needs at least two utterances")
    draws = rng.integers(0, pool_size, size=(len(positives), k))
    clash = draws == positives[:, None]
    while clash.any():
        draws[clash] = rng.integers(0, pool_size, size=int(clash.sum()))
        clash = draws == positives[:, None]
    return draws


def sample_distinct_negatives(rng: np.random.Generator, pool_size: int, positives: np.ndarray, k: int) -> np.ndarray:
    """Like `sample_negatives`, but the k negatives of a row are also distinct from each other."""
    out = np.empty((len(positives), k), dtype=np.int64)
    for i, pos in enumerate(positives):
        picks = rng.choice(pool_size - (pos >= 0), size=k, replace=False)
        if pos >= 0:
            picks = picks + (picks >= pos)  # skip the positive's own index
        out[i] = picks
    return out
