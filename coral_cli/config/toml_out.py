"""Write a resolved config as TOML, each key preceded by its help text as a comment."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any


def dump_toml(config: Any, header: str = "") -> str:
    """Render a config dataclass of sections (tables of scalars, lists and small tables)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    for section in dataclasses.fields(config):
        lines += _table(section.name, getattr(config, section.name))
    return "\n".join(lines).strip() + "\n"


def _table(name: str, obj: Any) -> list[str]:
    out = ["", f"[{name}]"]
    nested: list[str] = []
    doc = (type(obj).__doc__ or "").strip().splitlines()
    if doc:
        out.insert(1, f"# {doc[0]}")
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            nested += _table(f"{name}.{f.name}", value)
            continue
        if f.metadata.get("help"):
            out.append(f"# {f.metadata['help']}")
        out.append(f"{f.name} = {_value(value)}")
    return out + nested


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan")
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return '"none"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)
