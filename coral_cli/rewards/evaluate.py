"""Retriever evaluation: each positive against random negatives from its split's pool (R10@k,
MRR), ROC-AUC and accuracy on the balanced positive/negative set, and R100@k on DSTC7 JSON."""

from __future__ import annotations

from typing import Any

import numpy as np

from coral_cli.data.ubuntu import RetrievalExample
from coral_cli.rewards.base import RewardModel
from coral_cli.rewards.metrics import accuracy, mrr, recall_at_k, roc_auc
from coral_cli.rewards.negatives import sample_distinct_negatives
from coral_cli.rewards.retrieval_data import RetrievalData

EVAL_SEED = 1234  # fixed, so numbers from different runs compare


def score_matrix(model: RewardModel, contexts: list[list[int]], candidates: list[list[list[int]]]) -> np.ndarray:
    """(N, C) f_R scores of each context against each of its C candidates."""
    c = len(candidates[0])
    flat_ctx = [ctx for ctx in contexts for _ in range(c)]
    flat_cand = [cand for row in candidates for cand in row]
    return model.score_ids(flat_ctx, flat_cand).numpy().reshape(len(contexts), c)


def ranking_metrics(scores: np.ndarray, labels: np.ndarray, ks: tuple[int, ...], prefix: str) -> dict[str, float]:
    out = {f"{prefix}@{k}": recall_at_k(scores, labels, k) for k in ks if k <= scores.shape[1]}
    out["MRR"] = mrr(scores, labels)
    return out


def evaluate_pool(model: RewardModel, data: RetrievalData, n_candidates: int = 10,
                  seed: int = EVAL_SEED) -> dict[str, Any]:
    """Each positive vs `n_candidates - 1` distinct random pool utterances (never the positive)."""
    rng = np.random.default_rng(seed)
    negs = sample_distinct_negatives(rng, len(data.pool_ids), data.pool_index, n_candidates - 1)
    candidates = [[data.response_ids[i]] + [data.pool_ids[j] for j in negs[i]] for i in range(len(data))]
    scores = score_matrix(model, data.context_ids, candidates)
    labels = np.zeros(len(data), dtype=np.int64)
    out: dict[str, Any] = ranking_metrics(scores, labels, (1, 2, 5), f"R{n_candidates}")
    out.update(
        AUC=roc_auc(scores[:, 0], scores[:, 1]),
        accuracy=accuracy(scores[:, 0], scores[:, 1]),
        mean_pos=float(scores[:, 0].mean()),
        mean_neg=float(scores[:, 1:].mean()),
        contexts=len(data),
        candidates=n_candidates,
        seed=seed,
    )
    return out


def evaluate_examples(model: RewardModel, examples: list[RetrievalExample], max_context_tokens: int) -> dict[str, Any]:
    """R100@1/10/50 and MRR over the official DSTC7 candidates."""
    from coral_cli.data.encode import context_ids

    tok = model.tokenizer
    ctx = context_ids(tok, [ex.context for ex in examples], max_context_tokens)
    cands = [tok(ex.candidates, add_special_tokens=False)["input_ids"] for ex in examples]
    width = min(len(c) for c in cands)
    cands = [c[:width] for c in cands]
    labels = np.array([ex.label for ex in examples])
    if (labels >= width).any():
        raise ValueError("a correct answer lies beyond the shortest candidate list")
    scores = score_matrix(model, ctx, cands)
    out: dict[str, Any] = ranking_metrics(scores, labels, (1, 10, 50), f"R{width}")
    out.update(contexts=len(examples), candidates=width)
    return out
