"""Talking to the Hugging Face hub: which names are hub names, and whether a failure means there
is no internet (one message and `fix:` then, not a traceback). The lowest layer: anything may use it."""

from __future__ import annotations

import os
import re

HUB_NAME = re.compile(r"[\w.-]+/[\w.-]+(@[\w.-]+)?")  # org/name[@revision]


def is_hub_name(spec: str) -> bool:
    """`org/name[@revision]` that does not read as a relative path of ours (runs/..., ./..., ../...)."""
    return bool(HUB_NAME.fullmatch(spec)) and not spec.startswith(("runs/", "./", "../"))


def hub_offline() -> bool:
    """HF_HUB_OFFLINE is set to a true value."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def no_network(exc: BaseException | None) -> bool:
    """Whether `exc` or what it wraps says the hub could not be reached (not that the name is wrong)."""
    while exc is not None:
        name = type(exc).__name__
        if name == "LocalEntryNotFoundError" or "Connect" in name or "Timeout" in name:
            return True
        if "couldn't connect" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
