"""Options shared by several commands, and the flags -> config step of the one config path."""

from __future__ import annotations

import math
from collections.abc import Iterable
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


def check_plugins(cfg: Any, kind: str) -> None:
    """Unknown plugin names fail at command start, not after the data and weights have loaded."""
    from coral_cli.registry import REWARDS, SAMPLERS

    if kind == "retriever":
        REWARDS.check(cfg.retriever.model, "retriever.model")
    elif cfg.objective.loss == "coral":  # the CE baseline uses neither reward nor samplers
        REWARDS.check(cfg.objective.reward, "objective.reward")
        SAMPLERS.check(cfg.objective.on_policy_sampler, "objective.on_policy_sampler")
        SAMPLERS.check(cfg.objective.negative_sampler, "objective.negative_sampler")


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


def open_input(path: str) -> Iterable[str]:
    """Lines of stdin for '-', else of the file (UTF-8, BOM dropped); a missing file is a clear error."""
    from coral_cli.textio import read_text, stdin_lines

    if path == "-":
        return stdin_lines()
    return read_text(path, fix="pass an existing JSON lines file, or - for stdin").split("\n")


def check_out_file(path: Optional[Path], example: str) -> None:
    """Reject an --out that is a folder, a device, a FIFO or a socket before any work is done: the
    atomic write would replace the node with a regular file (a symlink is fine: its target is written)."""
    from coral_cli.atomic import special_file
    from coral_cli.errors import ConfigError, OutputError

    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder", f"pass a file path, e.g. --out {path / example}")
    kind = special_file(path)
    if kind is not None:
        raise OutputError(f"--out {path} is {kind}, not a regular file",
                          f"pass the path of a regular file, e.g. --out {example} (to discard the output, leave out --out)")


def check_finite(**options: float) -> None:
    """NaN and inf slip through click's min/max (every comparison with NaN is false)."""
    from coral_cli.errors import ConfigError

    for name, value in options.items():
        if not math.isfinite(value):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} = {value} is not a finite number", f"pass a number, e.g. {flag} 0.5")
