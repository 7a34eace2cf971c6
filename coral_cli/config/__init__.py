"""Typed configuration: recipes (TOML) -> dataclasses -> flag overrides."""

from coral_cli.config.recipe import parse_assignment, read_recipe, resolve, to_dict
from coral_cli.config.schema import CoralConfig, DataConfig, RuntimeConfig, TokenizerConfig
from coral_cli.config.toml_out import dump_toml

__all__ = [
    "CoralConfig",
    "DataConfig",
    "RuntimeConfig",
    "TokenizerConfig",
    "dump_toml",
    "parse_assignment",
    "read_recipe",
    "resolve",
    "to_dict",
]
