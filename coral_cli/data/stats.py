"""Size and length statistics of a dataset's splits (`coral data stats`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from coral_cli.config.schema import SPLITS, DataConfig
from coral_cli.data.encode import encode_pairs
from coral_cli.data.sources import load_pairs, resolve_source

PERCENTILES = (50, 90, 99)


def split_stats(cfg: DataConfig, split: str, tok: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Counts and token-length percentiles (before truncation) of one split."""
    enc = encode_pairs(load_pairs(cfg, split), tok, cfg)
    ctx = np.asarray(enc["context_tokens_total"])
    resp = np.asarray(enc["response_tokens_total"])
    n_turns = np.asarray([len(c) for c in enc["context"]])
    dialogue_ids = enc["dialogue_id"]
    utterances = {u for c in enc["context"] for u in c} | set(enc["response"])
    return {
        "split": split,
        "dialogues": len(set(dialogue_ids)),
        "pairs": len(enc),
        "distinct_utterances": len(utterances),
        "context_utterances_mean": round(float(n_turns.mean()), 2),
        "context_tokens": _percentiles(ctx),
        "response_tokens": _percentiles(resp),
        "context_truncated_share": round(float((ctx > cfg.max_context_tokens).mean()), 4),
        "response_truncated_share": round(float((resp > cfg.max_response_tokens).mean()), 4),
    }


def dataset_stats(cfg: DataConfig, tok: PreTrainedTokenizerBase, splits: tuple[str, ...] = SPLITS) -> dict[str, Any]:
    """Stats of each split plus where the data came from and the pair rule used."""
    source = resolve_source(cfg)
    return {
        "dataset": cfg.dataset,
        "source": source.describe(),
        "min_context_turns": None if source.kind == "ubuntu" else cfg.min_context_turns,
        "max_context_tokens": cfg.max_context_tokens,
        "max_response_tokens": cfg.max_response_tokens,
        "splits": [split_stats(cfg, s, tok) for s in splits],
    }


def _percentiles(values: np.ndarray) -> dict[str, float]:
    out = {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES}
    out["mean"] = round(float(values.mean()), 2)
    out["max"] = int(values.max())
    return out
