"""Reading `coral retriever score` requests: JSON lines {"context": [...] | "...", "response": "..."}."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from coral_cli.errors import DataError

FIX = 'each line must be {"context": ["utterance", ...], "response": "text"}'


def read_score_requests(lines: Iterable[str], name: str) -> list[dict[str, Any]]:
    """Validated rows; a string context is one utterance. Errors name the line."""
    rows = []
    where = "stdin" if name == "-" else name
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}:{lineno}: invalid JSON ({exc.msg})", FIX) from None
        if not isinstance(row, dict) or "context" not in row or "response" not in row:
            raise DataError(f"{where}:{lineno}: missing 'context' or 'response'", FIX)
        ctx = [row["context"]] if isinstance(row["context"], str) else row["context"]
        if not isinstance(ctx, list) or not all(isinstance(u, str) for u in ctx):
            raise DataError(f"{where}:{lineno}: 'context' must be a list of strings", FIX)
        ctx = [u for u in ctx if u.strip()]
        if not ctx:
            raise DataError(f"{where}:{lineno}: empty context", "give at least one non-empty utterance")
        if not isinstance(row["response"], str):
            raise DataError(f"{where}:{lineno}: 'response' must be a string", FIX)
        rows.append({**row, "context": ctx})
    return rows
