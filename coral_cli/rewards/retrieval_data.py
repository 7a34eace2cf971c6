"""Token ids of a split's (context, response) pairs and of its utterance pool, for retrievers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from coral_cli.config.schema import DataConfig
from coral_cli.data.encode import encode_pairs
from coral_cli.data.sources import load_pairs, utterance_pool


@dataclass
class RetrievalData:
    """Pairs (ids) plus the pool random negatives come from; `pool_index[i]` locates response i."""

    context_ids: list[list[int]]
    response_ids: list[list[int]]
    pool_ids: list[list[int]]
    pool_index: np.ndarray  # (N,) index of each true response in the pool, -1 if absent

    def __len__(self) -> int:
        return len(self.context_ids)

    def subset(self, rows: np.ndarray) -> RetrievalData:
        return RetrievalData([self.context_ids[i] for i in rows], [self.response_ids[i] for i in rows],
                             self.pool_ids, self.pool_index[rows])


def retrieval_data(cfg: DataConfig, split: str, tok: PreTrainedTokenizerBase) -> RetrievalData:
    """Encoded pairs of `split` and its tokenized pool of distinct utterances."""
    enc = encode_pairs(load_pairs(cfg, split), tok, cfg)
    pool = utterance_pool(cfg, split)
    where = {u: i for i, u in enumerate(pool)}
    pool_ids = tok(pool, add_special_tokens=False)["input_ids"]
    pool_ids = [ids[: cfg.max_response_tokens] for ids in pool_ids]
    index = np.array([where.get(r, -1) for r in enc["response"]], dtype=np.int64)
    return RetrievalData(enc["context_ids"], enc["response_ids"], pool_ids, index)
