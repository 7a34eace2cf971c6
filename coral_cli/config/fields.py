"""`opt()`: a dataclass field that carries its help text, its valid range and whether it shapes
what is trained.

The help text becomes the comment above the key in `coral config show` and in each run's
`config.toml`; the range is checked when a recipe or a flag is loaded; `trains` / `extends` say
which changes a resumed run accepts (`coral_cli.config.drift`).
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
    trains: bool | tuple[str, ...] = True,
    extends: bool = False,
) -> Any:
    """A config field: `default`, one line of `help`, optional `min`/`max` (inclusive) or `choices`.

    `trains`: whether changing it changes what is trained: True, False (device, folders, logging
    and checkpoint cadence, decoding), or the training kinds a section feeds, e.g. ("generator",).
    `extends`: a training limit that a resumed run may raise (to train further) but not lower.
    """
    meta = {"help": help, "min": min, "max": max, "choices": choices, "trains": trains, "extends": extends}
    if isinstance(default, (dict, list)) or is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)
