"""A split's pairs in a generator's own format (ids of its prompts and responses), with the
contexts' utterances kept for rewards that read text, and the training pool random negatives
come from (paper §3.3)."""

from __future__ import annotations

from typing import Any

import numpy as np

from coral_cli.config.schema import DataConfig
from coral_cli.data.encode import encode_pairs
from coral_cli.data.sources import load_pairs, utterance_pool
from coral_cli.generator.core.policy import Policy


def generator_data(cfg: DataConfig, split: str, policy: Policy, pool: bool = False) -> dict[str, Any]:
    """{context_ids, response_ids, texts} of `split` (+ pool_ids and each response's pool_index)."""
    enc = encode_pairs(load_pairs(cfg, split), policy.tokenizer, cfg, policy)
    cols = enc.select_columns(["context", "context_ids", "response_ids"])[:]
    data: dict[str, Any] = {"context_ids": cols["context_ids"], "response_ids": cols["response_ids"],
                            "texts": cols["context"]}
    if pool:
        utterances = utterance_pool(cfg, split)
        where = {u: i for i, u in enumerate(utterances)}
        data["pool_ids"] = policy.response_ids(utterances, cfg.max_response_tokens)
        data["pool_index"] = np.array([where.get(r, -1) for r in enc["response"]], dtype=np.int64)
    return data
