"""A results-table recipe: the stages that reproduce one table of the paper, in order.

```toml
[table]
title = "DailyDialog (paper Tables 1 and 3)"
paper = "dailydialog"                      # whose published numbers sit next to ours
runs_dir = "runs/dd-table1"                # every stage's run folder lives here
evaluators = { ESIM = "evaluator-esim", BERT = "evaluator-bert" }   # MAUDE-<name> columns

[[stage]]                                  # a retriever: reward or evaluator
name = "retriever-bert"
train = "retriever"
recipe = "retriever-bert.toml"             # relative to this file

[[stage]]                                  # a generator: one row of the table
name = "coral-bert-mix"
train = "generator"
recipe = "coral-bert-mix.toml"
reward = "retriever-bert"                  # its R3 reward: that stage's best checkpoint
row = "coral-bert-mix"                     # the paper's row next to it (paper_tables.py)
label = "CORAL-BERT (mix-policy)"
set = ["train.max_steps=100"]              # --set overrides for this stage only
```

A stage may name `checkpoint = "DIR"` instead of `recipe` to use a model trained elsewhere.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coral_cli.errors import ConfigError
from coral_cli.metrics.bleu import VARIANTS
from coral_cli.pipeline.paper_tables import PAPER_TABLES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KINDS = ("retriever", "generator")
TABLE_KEYS = {"title", "paper", "runs_dir", "split", "evaluators", "ground_truth", "bleu", "set"}
STAGE_KEYS = {"name", "train", "recipe", "checkpoint", "set", "reward", "row", "label"}


@dataclass(frozen=True)
class StageSpec:
    """One stage: train (or take) a retriever or a generator; generator stages are table rows."""

    name: str
    kind: str
    recipe: Path | None = None
    checkpoint: Path | None = None
    sets: tuple[str, ...] = ()
    reward: str = ""
    row: str = ""
    label: str = ""


@dataclass(frozen=True)
class TableSpec:
    """The whole table: where runs go, which split is scored, and the stages in order."""

    path: Path
    title: str
    paper: str
    runs_dir: Path
    split: str = "test"
    evaluators: dict[str, str] = field(default_factory=dict)
    ground_truth: bool = True
    bleu: str = "sacrebleu"
    sets: tuple[str, ...] = ()
    stages: tuple[StageSpec, ...] = ()

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def rows(self) -> tuple[StageSpec, ...]:
        return tuple(s for s in self.stages if s.kind == "generator")


def read_table(path: str | Path, runs_dir: str | Path | None = None) -> TableSpec:
    """Parse and check a table recipe; every problem is reported at once."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"table recipe not found: {path}", "pass a file like recipes/dailydialog/table1.toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", "fix the recipe's syntax") from None
    errors: list[str] = []
    table = data.get("table")
    if not isinstance(table, dict):
        raise ConfigError(f"{path} has no [table] section", "is this a table recipe? see recipes/dailydialog/table1.toml")
    errors += _unknown("[table]", table, TABLE_KEYS)
    errors += _unknown("the recipe", data, {"table", "stage"})
    paper = str(table.get("paper", ""))
    if paper not in PAPER_TABLES:
        errors.append(f"[table] paper = '{paper}': choose from {', '.join(PAPER_TABLES)}")
    bleu = str(table.get("bleu", "sacrebleu"))
    if bleu not in VARIANTS:
        errors.append(f"[table] bleu = '{bleu}': choose from {', '.join(VARIANTS)}")
    raw_stages = data.get("stage", [])
    if not isinstance(raw_stages, list) or not raw_stages:
        errors.append("no [[stage]] entries")
        raw_stages = []
    stages = [_stage(i, raw, path.parent, errors) for i, raw in enumerate(raw_stages, start=1)]
    stages = [s for s in stages if s is not None]
    _check_references(stages, table, paper, errors)
    if errors:
        lines = "\n".join(f"  - {e}" for e in errors)
        raise ConfigError(f"invalid table recipe {path} ({len(errors)} problem{'s' * (len(errors) > 1)}):\n{lines}",
                          "see the format in coral_cli/pipeline/spec.py or recipes/dailydialog/table1.toml")
    return TableSpec(
        path=path, title=str(table.get("title", path.stem)), paper=paper,
        runs_dir=Path(runs_dir or table.get("runs_dir") or f"runs/{path.stem}"),
        split=str(table.get("split", "test")), evaluators=dict(table.get("evaluators", {})),
        ground_truth=bool(table.get("ground_truth", True)), bleu=bleu,
        sets=tuple(table.get("set", [])), stages=tuple(stages),
    )


def _stage(i: int, raw: Any, base: Path, errors: list[str]) -> StageSpec | None:
    where = f"stage {i}"
    if not isinstance(raw, dict):
        errors.append(f"{where} is not a table")
        return None
    name = str(raw.get("name", ""))
    where = f"stage {i} ('{name}')" if name else where
    errors += _unknown(where, raw, STAGE_KEYS)
    if not name or "/" in name or name.startswith("."):
        errors.append(f"{where}: needs a name usable as a folder name")
    kind = str(raw.get("train", ""))
    if kind not in KINDS:
        errors.append(f"{where}: train = '{kind}', choose from {', '.join(KINDS)}")
    recipe, checkpoint = raw.get("recipe"), raw.get("checkpoint")
    if bool(recipe) == bool(checkpoint):
        errors.append(f"{where}: give exactly one of recipe (train it) or checkpoint (use a trained one)")
    recipe_path = (base / recipe) if recipe else None
    if recipe_path is not None and not recipe_path.is_file():
        errors.append(f"{where}: recipe {recipe_path} not found")
    sets = raw.get("set", [])
    if not isinstance(sets, list) or not all(isinstance(s, str) and "=" in s for s in sets):
        errors.append(f"{where}: set must be a list of 'section.key=value' strings")
        sets = []
    return StageSpec(name=name, kind=kind, recipe=recipe_path, checkpoint=Path(checkpoint) if checkpoint else None,
                     sets=tuple(sets), reward=str(raw.get("reward", "")), row=str(raw.get("row", "")),
                     label=str(raw.get("label", "") or name))


def _check_references(stages: list[StageSpec], table: dict[str, Any], paper: str, errors: list[str]) -> None:
    """Names are unique; rewards and evaluators name earlier retriever stages; rows exist in the paper."""
    seen: dict[str, StageSpec] = {}
    for s in stages:
        if s.name in seen:
            errors.append(f"stage name '{s.name}' is used twice")
        if s.reward:
            _refers(f"stage '{s.name}': reward", s.reward, seen, errors)
        if s.kind == "retriever" and (s.reward or s.row):
            errors.append(f"stage '{s.name}': reward and row belong to generator stages")
        if s.row and paper in PAPER_TABLES and s.row not in PAPER_TABLES[paper]["rows"]:
            close = difflib.get_close_matches(s.row, PAPER_TABLES[paper]["rows"], n=1)
            errors.append(f"stage '{s.name}': row '{s.row}' is not in the paper's {paper} table"
                          + (f" (did you mean '{close[0]}'?)" if close else ""))
        seen[s.name] = s
    evaluators = table.get("evaluators", {})
    if not isinstance(evaluators, dict):
        errors.append("[table] evaluators must be a table of column name = stage name")
        return
    for column, stage in evaluators.items():
        _refers(f"[table] evaluators.{column}", str(stage), seen, errors)


def _refers(where: str, name: str, seen: dict[str, StageSpec], errors: list[str]) -> None:
    if name not in seen:
        close = difflib.get_close_matches(name, list(seen), n=1)
        errors.append(f"{where} = '{name}' is not an earlier stage" + (f" (did you mean '{close[0]}'?)" if close else ""))
    elif seen[name].kind != "retriever":
        errors.append(f"{where} = '{name}' is a {seen[name].kind} stage, not a retriever")


def _unknown(where: str, raw: dict[str, Any], allowed: set[str]) -> list[str]:
    out = []
    for key in sorted(set(raw) - allowed):
        close = difflib.get_close_matches(key, sorted(allowed), n=1)
        out.append(f"{where}: unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return out
