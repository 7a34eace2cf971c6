"""What to generate for: a dataset split (with references) or JSON lines of arbitrary contexts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from transformers import PreTrainedTokenizerBase

from coral_cli.config.schema import DataConfig
from coral_cli.data.encode import encode_pairs, join_context
from coral_cli.data.sources import load_pairs
from coral_cli.errors import DataError

FIX = 'each line must be {"context": ["utterance", ...]} (optional "id", "reference")'


def split_requests(cfg: DataConfig, split: str, tok: PreTrainedTokenizerBase) -> list[dict[str, Any]]:
    """One request per pair of the split: id '<dialogue>:<turn>', context, reference, context_ids."""
    enc = encode_pairs(load_pairs(cfg, split), tok, cfg)
    return [
        {"id": f"{d}:{t}", "context": c, "reference": r, "context_ids": ids}
        for d, t, c, r, ids in zip(enc["dialogue_id"], enc["turn"], enc["context"], enc["response"], enc["context_ids"])
    ]


def jsonl_requests(lines: Iterable[str], name: str, tok: PreTrainedTokenizerBase, max_context_tokens: int) -> list[dict[str, Any]]:
    """Requests from JSON lines; a string context is one utterance. Errors name the line."""
    where = "stdin" if name == "-" else name
    out = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}:{lineno}: invalid JSON ({exc.msg})", FIX) from None
        ctx = row.get("context") if isinstance(row, dict) else None
        ctx = [ctx] if isinstance(ctx, str) else ctx
        if not isinstance(ctx, list) or not all(isinstance(u, str) for u in ctx):
            raise DataError(f"{where}:{lineno}: 'context' must be a list of strings", FIX)
        ctx = [u.strip() for u in ctx if u.strip()]
        if not ctx:
            raise DataError(f"{where}:{lineno}: empty context", "give at least one non-empty utterance")
        ids = join_context(tok(ctx, add_special_tokens=False)["input_ids"], tok.sep_token_id, max_context_tokens)
        out.append({"id": row.get("id", lineno), "context": ctx, "reference": row.get("reference"), "context_ids": ids})
    if not out:
        raise DataError(f"{where}: no contexts to generate for", FIX)
    return out
