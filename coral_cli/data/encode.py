"""Tokenize pairs once and cache the result, so a second run does not tokenize again.

Context = the preceding utterances joined with the tokenizer's [SEP], truncated from the left
to `max_context_tokens` (the most recent tokens are kept); response = its WordPiece ids,
truncated to `max_response_tokens`. No [CLS]/[SEP] framing here: each model adds its own.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Protocol

from datasets import Dataset, Features, Sequence, Value
from transformers import PreTrainedTokenizerBase

from coral_cli.config.schema import DataConfig
from coral_cli.tokenizer import tokenizer_fingerprint

CACHE_ENV = "CORAL_CACHE_DIR"
ENCODE_VERSION = "1"  # bump when the encoding below changes, to invalidate old caches

ENCODED_FEATURES = {
    "context_ids": Sequence(Value("int32")),
    "response_ids": Sequence(Value("int32")),
    "context_tokens_total": Value("int32"),
    "response_tokens_total": Value("int32"),
}


def cache_dir(cfg: DataConfig) -> Path:
    """`data.cache_dir`, else $CORAL_CACHE_DIR, else ~/.cache/coral."""
    root = cfg.cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "coral"
    return Path(root).expanduser()


def join_context(utterance_ids: list[list[int]], sep_id: int, budget: int) -> list[int]:
    """u1 [SEP] u2 [SEP] ... un, keeping only the last `budget` tokens (left truncation)."""
    ids: list[int] = []
    for i, utt in enumerate(utterance_ids):
        if i:
            ids.append(sep_id)
        ids.extend(utt)
    return ids[-budget:] if len(ids) > budget else ids


def token_ids(tok: PreTrainedTokenizerBase, texts: list[str]) -> dict[str, list[int]]:
    """WordPiece ids (no specials) of each distinct text, each tokenized once."""
    unique = list(dict.fromkeys(texts))
    return dict(zip(unique, tok(unique, add_special_tokens=False)["input_ids"])) if unique else {}


def context_ids(tok: PreTrainedTokenizerBase, contexts: list[list[str]], budget: int) -> list[list[int]]:
    """Each context's utterances joined with [SEP] and left-truncated to `budget` tokens."""
    ids = token_ids(tok, [u for c in contexts for u in c])
    return [join_context([ids[u] for u in c], tok.sep_token_id, budget) for c in contexts]


def encode_batch(batch: dict[str, list[Any]], tok: PreTrainedTokenizerBase, cfg: DataConfig) -> dict[str, list[Any]]:
    """Batched map function: each distinct utterance of the batch is tokenized once."""
    ids = token_ids(tok, [u for ctx in batch["context"] for u in ctx] + batch["response"])
    contexts = [[ids[u] for u in ctx] for ctx in batch["context"]]
    responses = [ids[r] for r in batch["response"]]
    return {
        "context_ids": [join_context(c, tok.sep_token_id, cfg.max_context_tokens) for c in contexts],
        "response_ids": [r[: cfg.max_response_tokens] for r in responses],
        "context_tokens_total": [sum(map(len, c)) + max(len(c) - 1, 0) for c in contexts],
        "response_tokens_total": [len(r) for r in responses],
    }


class PairFormat(Protocol):
    """How a generator backend turns pairs into ids (`coral_cli.generator.core.policy.Policy`)."""

    fingerprint: str  # equal fingerprints encode identically (the cache key)

    def encode_batch(self, batch: dict[str, list[Any]], cfg: DataConfig) -> dict[str, list[Any]]: ...


def encode_pairs(pairs: Dataset, tok: PreTrainedTokenizerBase, cfg: DataConfig, fmt: PairFormat | None = None) -> Dataset:
    """Add token-id columns to `pairs` through a `map` cached on disk: WordPiece contexts joined
    with [SEP] (the paper's format), or `fmt`'s own format (a pretrained LM's).

    The cache file is addressed by the pairs' content, the format and the budgets, so a
    change to any of them re-tokenizes and nothing else does.
    """
    folder = cache_dir(cfg) / "encoded"
    folder.mkdir(parents=True, exist_ok=True)
    features = Features({**pairs.features, **ENCODED_FEATURES})
    fn, kwargs = (encode_batch, {"tok": tok, "cfg": cfg}) if fmt is None else (fmt.encode_batch, {"cfg": cfg})
    key = tokenizer_fingerprint(tok) if fmt is None else fmt.fingerprint
    return pairs.map(
        fn,
        batched=True,
        batch_size=1000,
        fn_kwargs=kwargs,
        features=features,
        cache_file_name=str(folder / f"{_cache_key(pairs, key, cfg)}.arrow"),
        load_from_cache_file=True,
        desc="tokenizing",
    )


def _cache_key(pairs: Dataset, fingerprint: str, cfg: DataConfig) -> str:
    h = hashlib.sha1(f"{ENCODE_VERSION}|{fingerprint}|{cfg.max_context_tokens}|"
                     f"{cfg.max_response_tokens}".encode())
    for context, response in zip(pairs["context"], pairs["response"]):
        h.update("\x1f".join(context).encode())
        h.update(b"\x1e" + response.encode() + b"\x1d")
    return h.hexdigest()[:24]
