"""The one config path: TOML recipe -> typed dataclasses -> flag overrides -> resolved config.

Errors from the recipe and the flags are collected and reported together, so one run of
`coral config show` lists every problem.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from coral_cli.config.schema import CoralConfig
from coral_cli.config.typed import build
from coral_cli.errors import ConfigError
from coral_cli.textio import read_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_recipe(path: str | Path) -> dict[str, Any]:
    """Parse a TOML recipe; a missing file or a syntax error is a `ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}", "pass an existing .toml file to --recipe")
    try:
        return tomllib.loads(read_text(path, ConfigError, "pass a readable .toml file to --recipe"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", "fix the recipe's syntax") from None


def parse_assignment(text: str) -> tuple[str, Any]:
    """`'data.max_pairs=100'` -> `('data.max_pairs', 100)`; the value is read as a TOML literal."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"bad --set '{text}'", "write it as section.key=value")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word is a string
    return key.strip(), value


def resolve(
    recipe: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    schema: type = CoralConfig,
) -> Any:
    """Defaults, then the recipe, then `overrides` (dotted keys, e.g. 'coral.p_plus')."""
    data: dict[str, Any] = read_recipe(recipe) if recipe else {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"cannot set '{dotted}': '{part}' is not a table")
        node[leaf] = value
    errors: list[str] = []
    config = build(schema, data, errors)
    if errors:
        where = f" in {recipe}" if recipe else ""
        lines = "\n".join(f"  - {e}" for e in errors)
        raise ConfigError(
            f"invalid config{where} ({len(errors)} problem{'s' * (len(errors) > 1)}):\n{lines}",
            "run 'coral config show' to see every key with its help and default",
        )
    return config


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts (what `resolve` accepts back)."""
    return dataclasses.asdict(config)
