"""Which config changes a started run accepts: the one rule behind `--resume` and the table runner.

A run continues only under the config it was trained with. Keys marked `trains=False` in the
schema (device, folders, logging and checkpoint cadence, decoding) may change freely; keys marked
`extends=True` (max_steps, max_epochs) may be raised, so a run can be trained further: it then
continues with the linear decay stretched to the new total from where it stopped, which is not
bit-identical to a run started with the larger limit. Everything else must stay as it was.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def config_drift(saved: Any, new: Any, kind: str | None = None, extend: bool = True) -> list[str]:
    """`'key: old -> new'` for every key of `new` that changes what a `kind` training ('retriever',
    'generator'; None = any) would train, compared with `saved`; [] when it may continue.

    `extend=False` counts a raised limit as a change too (a finished stage is not trained further).
    """
    out: list[str] = []
    _walk(saved, new, kind, extend, "", out)
    return out


def _walk(old: Any, new: Any, kind: str | None, extend: bool, prefix: str, out: list[str]) -> None:
    for f in dataclasses.fields(new):
        trains = f.metadata.get("trains", True)
        if trains is False or (kind is not None and isinstance(trains, tuple) and kind not in trains):
            continue
        a, b, key = getattr(old, f.name), getattr(new, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(b):
            _walk(a, b, kind, extend, f"{key}.", out)
        elif a != b and not (extend and f.metadata.get("extends") and _raised(a, b)):
            out.append(f"{key}: {a!r} -> {b!r}")


def _raised(old: Any, new: Any) -> bool:
    """A limit grew; 0 means no limit (max_steps)."""
    return new == 0 or (old != 0 and new > old)
