"""Rich consoles: results to stdout, messages and errors to stderr (so `--json` output pipes)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """One JSON document on stdout and nothing else."""
    print(json.dumps(data, indent=2, ensure_ascii=False))
