"""Build typed config dataclasses from plain dicts, collecting every problem at once.

Values come from TOML (already typed) or from command-line strings (parsed as TOML literals
first, so `--set data.max_pairs=100` gives an int). Unknown keys get a "did you mean" hint.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Union, get_args, get_origin

_MISSING = object()


def build(cls: type, data: dict[str, Any], errors: list[str], path: str = "") -> Any:
    """Instantiate dataclass `cls` from `data`; append one message per problem to `errors`."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            where = f"{path}.{key}" if path else key
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            known = ", ".join(fields)
            errors.append(f"unknown key '{where}'{hint}; known keys here: {known}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            continue
        where = f"{path}.{name}" if path else name
        raw = data[name]
        if f.default_factory is not dataclasses.MISSING and isinstance(raw, dict):
            default = f.default_factory()
            if dataclasses.is_dataclass(default):  # a partial table keeps this field's own defaults
                raw = _overlay(dataclasses.asdict(default), raw)
        value = _coerce(hints[name], raw, where, errors)
        if value is _MISSING:
            continue
        _check_range(f, value, where, errors)
        kwargs[name] = value
    obj = cls(**kwargs)
    check = getattr(obj, "problems", None)
    if check is not None:
        errors.extend(f"'{path}': {p}" if path else p for p in check())
    return obj


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, recursing into sub-tables (e.g. [retriever.train] over its defaults)."""
    out = dict(base)
    for key, value in top.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _overlay(base[key], value) if both else value
    return out


def _coerce(tp: Any, value: Any, where: str, errors: list[str]) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"'{where}' must be a table of keys, got {value!r}")
            return _MISSING
        return build(tp, value, errors, where)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None or value == "none":
            return None
        return _coerce(args[0], value, where, errors)
    if origin is list:
        (item,) = get_args(tp)
        if not isinstance(value, list):
            errors.append(f"'{where}' must be a list, got {value!r}")
            return _MISSING
        out = [_coerce(item, v, f"{where}[{i}]", errors) for i, v in enumerate(value)]
        return _MISSING if _MISSING in out else out
    if origin is dict:
        _, item = get_args(tp)
        if not isinstance(value, dict):
            errors.append(f"'{where}' must be a table, got {value!r}")
            return _MISSING
        out = {str(k): _coerce(item, v, f"{where}.{k}", errors) for k, v in value.items()}
        return _MISSING if _MISSING in out.values() else out
    return _scalar(tp, value, where, errors)


def _scalar(tp: type, value: Any, where: str, errors: list[str]) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        errors.append(f"'{where}' = {value!r} is not a finite number")  # NaN passes every range check
        return _MISSING
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    errors.append(f"'{where}' must be {tp.__name__}, got {type(value).__name__} {value!r}")
    return _MISSING


def _check_range(f: dataclasses.Field, value: Any, where: str, errors: list[str]) -> None:
    meta = f.metadata
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if choices is not None and value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        errors.append(f"'{where}' = {value!r} is not one of {', '.join(map(str, choices))}{hint}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            errors.append(f"'{where}' = {value!r} is out of range {bounds}")
