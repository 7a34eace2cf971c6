"""Reading `coral retriever score` requests: JSON lines {"context": [...] | "...", "response": "..."}."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from coral_cli.data.jsonl_contexts import read_context_lines


def read_score_requests(lines: Iterable[str], name: str) -> list[dict[str, Any]]:
    """Validated rows; a string context is one utterance. Errors name the line."""
    return [{k: v for k, v in row.items() if k != "_line"} for row in read_context_lines(lines, name, ("response",))]
