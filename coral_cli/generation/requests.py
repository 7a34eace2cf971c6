"""What to generate for: a dataset split (with references) or JSON lines of arbitrary contexts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from coral_cli.config.schema import DataConfig
from coral_cli.data.encode import PairFormat, encode_pairs
from coral_cli.data.jsonl_contexts import read_context_lines
from coral_cli.data.sources import load_pairs
from coral_cli.errors import DataError

def split_requests(cfg: DataConfig, split: str, policy: PairFormat) -> list[dict[str, Any]]:
    """One request per pair of the split: id '<dialogue>:<turn>', context, reference, context_ids
    (in the generator's format)."""
    enc = encode_pairs(load_pairs(cfg, split), policy.tokenizer, cfg, policy)
    return [
        {"id": f"{d}:{t}", "context": c, "reference": r, "context_ids": ids}
        for d, t, c, r, ids in zip(enc["dialogue_id"], enc["turn"], enc["context"], enc["response"], enc["context_ids"])
    ]


def jsonl_requests(lines: Iterable[str], name: str, policy: Any, max_context_tokens: int) -> list[dict[str, Any]]:
    """Requests from JSON lines (id defaults to the line number); errors name the line."""
    out = []
    for row in read_context_lines(lines, name):
        ids = policy.context_ids([row["context"]], max_context_tokens)[0]
        out.append({"id": row.get("id", row["_line"]), "context": row["context"], "reference": row.get("reference"),
                    "context_ids": ids})
    if not out:
        raise DataError(f"{'stdin' if name == '-' else name}: no contexts to generate for",
                        'give JSON lines {"context": ["utterance", ...]}')
    return out
