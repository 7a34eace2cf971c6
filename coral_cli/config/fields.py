"""`opt()`: a dataclass field that carries its help text and its valid range.

The help text becomes the comment above the key in `coral config show` and in each run's
`config.toml`; the range is checked when a recipe or a flag is loaded.
"""

from __future__ import annotations

import copy
from dataclasses import field, is_dataclass
from typing import Any


def opt(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """A config field: `default`, one line of `help`, optional `min`/`max` (inclusive) or `choices`."""
    meta = {"help": help, "min": min, "max": max, "choices": choices}
    if isinstance(default, (dict, list)) or is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)
