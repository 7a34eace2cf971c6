"""Options shared by several commands, and the flags -> config step of the one config path."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

Recipe = Annotated[Optional[Path], typer.Option("--recipe", "-r", help="TOML recipe (see recipes/).")]
Sets = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override any config key: section.key=value (repeatable)."),
]
Dataset = Annotated[
    Optional[str], typer.Option(help="dailydialog, ubuntu, or hf:<name>. [default: dailydialog]")
]
DataDir = Annotated[
    Optional[str],
    typer.Option(help="Folder with the dataset's files (default: $CORAL_DATA_DIR/<dataset> or bundled)."),
]
MaxContextTokens = Annotated[
    Optional[int], typer.Option(help="Context token budget, left-truncated. [default: 256]")
]
MaxPairs = Annotated[Optional[int], typer.Option(help="Use only the first N pairs of each split.")]
Tokenizer = Annotated[
    Optional[str], typer.Option(help="'bundled' (offline bert-base-uncased vocab) or a HF name/path.")
]
Device = Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N. [default: auto]")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def load_config(recipe: Optional[Path], sets: Optional[list[str]], flags: dict[str, Any]) -> Any:
    """Defaults < recipe < --set < named flags; every problem reported at once."""
    from coral_cli.config import parse_assignment, resolve

    overrides: dict[str, Any] = dict(parse_assignment(s) for s in sets or [])
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return resolve(recipe, overrides)


def data_flags(dataset: Optional[str], data_dir: Optional[str], max_context_tokens: Optional[int] = None,
               max_pairs: Optional[int] = None, tokenizer: Optional[str] = None) -> dict[str, Any]:
    """The common data flags as dotted config keys."""
    return {
        "data.dataset": dataset,
        "data.data_dir": data_dir,
        "data.max_context_tokens": max_context_tokens,
        "data.max_pairs": max_pairs,
        "tokenizer.name": tokenizer,
    }


def open_input(path: str) -> Any:
    """stdin for '-', else the file; a missing file is a clear error."""
    import sys

    from coral_cli.errors import DataError

    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}", "pass an existing JSON lines file, or - for stdin") from None
