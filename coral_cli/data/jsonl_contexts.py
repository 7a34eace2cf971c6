"""JSON lines of contexts, as `coral generate --input`, `coral retriever score` and `coral chat`
read them: {"context": ["utterance", ...] or "utterance", ...}. Errors name the line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from coral_cli.errors import DataError


def read_context_lines(lines: Iterable[str], name: str, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Rows with 'context' as a list of non-empty utterances; `required` string fields checked too."""
    where = "stdin" if name == "-" else name
    fields = ", ".join(f'"{f}": "text"' for f in required)
    fix = '{"context": ["utterance", ...]' + (f", {fields}" if fields else "") + "}"
    rows = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}:{lineno}: invalid JSON ({exc.msg})", f"each line must be {fix}") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}:{lineno}: expected a JSON object, got {type(row).__name__}", f"each line must be {fix}")
        if "context" not in row:
            raise DataError(f"{where}:{lineno}: missing 'context'", f"each line must be {fix}")
        ctx = [row["context"]] if isinstance(row["context"], str) else row["context"]
        if not isinstance(ctx, list) or not all(isinstance(u, str) for u in ctx):
            raise DataError(f"{where}:{lineno}: 'context' must be a list of strings", f"each line must be {fix}")
        ctx = [u.strip() for u in ctx if u.strip()]
        if not ctx:
            raise DataError(f"{where}:{lineno}: empty context", "give at least one non-empty utterance")
        for field in required:
            if not isinstance(row.get(field), str):
                raise DataError(f"{where}:{lineno}: '{field}' must be a string", f"each line must be {fix}")
        rows.append({**row, "context": ctx, "_line": lineno})
    return rows
