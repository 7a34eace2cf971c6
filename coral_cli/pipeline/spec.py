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

A stage may name `checkpoint = "DIR"` instead of `recipe` to use a model trained elsewhere, or
`generator = "<an earlier generator stage>"` to make another row from that stage's model. A row
reranks (the paper's DialogRPT rows) with `rerank_with` (a retriever stage, a reward checkpoint
folder or a Hugging Face classifier) and `candidates = N`: N samples per context, the one the
ranker scores highest is the row's response.

```toml
[[stage]]
name = "smollm2-zs-rerank"
train = "generator"
generator = "smollm2-zs"                   # that row's model, not trained again
rerank_with = "reward-dmi"                 # f_R picks the best of the candidates
candidates = 8
row = "dialogrpt-zs"
```
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path

from coral_cli.config import parse_assignment, resolve
from coral_cli.config.fields import opt
from coral_cli.config.recipe import read_recipe
from coral_cli.config.schema import SPLITS
from coral_cli.config.typed import build
from coral_cli.errors import ConfigError
from coral_cli.metrics.bleu import VARIANTS
from coral_cli.pipeline.paper_tables import PAPER_TABLES
from coral_cli.runs import run_name_problem

KINDS = ("retriever", "generator")


@dataclass
class TableSection:
    """`[table]`: what the table reproduces and how it is scored."""

    title: str = opt("", "heading of results.md (default: the file name)")
    paper: str = opt("", "whose published numbers sit next to ours", choices=tuple(PAPER_TABLES))
    runs_dir: str = opt("", "folder of every stage's run (default: runs/<file name>)")
    split: str = opt("test", "the split generated and scored", choices=SPLITS)
    max_pairs: int = opt(0, "generate and score only the first N pairs of the split (0 = all); training data "
                            "is each stage's own data.max_pairs", min=0)
    evaluators: dict[str, str] = opt({}, "MAUDE-<column> = the retriever stage that scores it")
    ground_truth: bool = opt(True, "add the Ground Truth row (the references scored as predictions)")
    seeds: int = opt(1, "training seeds per trained generator row (runtime.seed, +1 each): results show mean ± sd",
                     min=1)
    compare_to: str = opt("", "the row every other row is tested against: a paired bootstrap over the test "
                              "contexts marks differences with p < 0.05")
    bootstrap: int = opt(1000, "bootstrap resamples for compare_to", min=100)
    case_study: int = opt(5, "test contexts (a seeded choice) shown with every row's reply, as the paper's Table 2",
                          min=0)
    bleu: str = opt("sacrebleu", "BLEU variant", choices=tuple(VARIANTS))
    set: list[str] = opt([], "--set overrides for every stage")
    jobs: int = opt(1, "stages run side by side, each in a process with its share of the CPU threads (1: one "
                       "after another in this process, with live progress)", min=1)

    def problems(self) -> list[str]:
        out = [] if self.paper else [f"paper is missing: choose from {', '.join(PAPER_TABLES)}"]
        return out + _bad_sets(self.set)


@dataclass
class StageEntry:
    """`[[stage]]`: train (or take) a retriever or a generator; generator stages are table rows."""

    name: str = opt("", "the stage's run folder name, unique in the table")
    train: str = opt("", "what the stage trains", choices=KINDS)
    recipe: str = opt("", "its recipe, relative to the table file (or give checkpoint)")
    checkpoint: str = opt("", "a model trained elsewhere (instead of recipe)")
    generator: str = opt("", "generators: the earlier generator stage whose model this row uses (instead of recipe)")
    rerank_with: str = opt("", "generators: a retriever stage, reward folder or HF classifier that picks the best "
                               "of `candidates` samples (the paper's DialogRPT rows)")
    candidates: int = opt(0, "generators: samples per context for rerank_with", min=0)
    set: list[str] = opt([], "--set overrides for this stage only")
    reward: str = opt("", "generators: the retriever stage whose best checkpoint is the R3 reward")
    row: str = opt("", "generators: the paper's row next to it")
    label: str = opt("", "the row's label in results.md (default: the name)")

    def problems(self) -> list[str]:
        problem = run_name_problem(self.name)  # the stage's run folder: the same rule as --name
        out = [f"name = {problem}"] if problem else []
        if not self.train:
            out.append(f"train is missing: choose from {', '.join(KINDS)}")
        if sum(map(bool, (self.recipe, self.checkpoint, self.generator))) != 1:
            out.append("give exactly one of recipe (train it), checkpoint (use a trained one) or generator "
                       "(an earlier generator stage's model)")
        if bool(self.rerank_with) != (self.candidates > 0):
            out.append("rerank_with and candidates go together (rerank N candidates per context)")
        elif self.rerank_with and self.candidates < 2:
            out.append(f"candidates = {self.candidates}: reranking needs at least 2")
        return out + _bad_sets(self.set)


@dataclass
class TableRecipe:
    """A whole table recipe file."""

    table: TableSection = opt(TableSection(), "the table")
    stage: list[StageEntry] = opt([], "the stages, in order")


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
    generator: str = ""  # an earlier generator stage whose model this row uses
    rerank_with: str = ""  # a retriever stage name, or a reward / classifier folder or hub name
    candidates: int = 0
    seed_of: str = ""  # the stage this one repeats with another training seed (`[table] seeds`)


@dataclass(frozen=True)
class TableSpec:
    """The whole table: where runs go, which split is scored, and the stages in order."""

    path: Path
    title: str
    paper: str
    runs_dir: Path
    split: str = "test"
    max_pairs: int = 0
    evaluators: dict[str, str] = field(default_factory=dict)
    ground_truth: bool = True
    bleu: str = "sacrebleu"
    sets: tuple[str, ...] = ()
    stages: tuple[StageSpec, ...] = ()
    seeds: int = 1
    compare_to: str = ""
    bootstrap: int = 1000
    case_study: int = 5
    jobs: int = 1

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def rows(self) -> tuple[StageSpec, ...]:
        """Generator stages, seed repeats included."""
        return tuple(s for s in self.stages if s.kind == "generator")

    def seeds_of(self, stage: StageSpec) -> tuple[StageSpec, ...]:
        """The stage and its repeats with other training seeds, in seed order."""
        return (stage, *(s for s in self.stages if s.seed_of == stage.name))


def read_table(path: str | Path, runs_dir: str | Path | None = None, seeds: int | None = None) -> TableSpec:
    """Parse and check a table recipe with the typed-config code every recipe uses; every
    problem is reported at once. `seeds` overrides `[table] seeds`."""
    path = Path(path)
    data = read_recipe(path)
    if not isinstance(data.get("table"), dict):
        raise ConfigError(f"{path} has no [table] section", "is this a table recipe? see recipes/dailydialog/table1.toml")
    errors: list[str] = []
    recipe = build(TableRecipe, data, errors)
    if not recipe.stage:
        errors.append("no [[stage]] entries")
    stages = [_stage(entry, path.parent, errors) for entry in recipe.stage]
    _check_references(stages, recipe.table, errors)
    if recipe.table.compare_to and recipe.table.compare_to not in {s.name for s in stages if s.kind == "generator"}:
        errors.append(f"[table] compare_to = '{recipe.table.compare_to}' is not a generator stage")
    if seeds is not None and seeds < 1:
        errors.append(f"--seeds {seeds}: give at least 1")
    elif not errors:
        stages = _with_seeds(stages, seeds or recipe.table.seeds, recipe.table.set)
    if errors:
        lines = "\n".join(f"  - {e}" for e in errors)
        raise ConfigError(f"invalid table recipe {path} ({len(errors)} problem{'s' * (len(errors) > 1)}):\n{lines}",
                          "see the format in coral_cli/pipeline/spec.py or recipes/dailydialog/table1.toml")
    t = recipe.table
    return TableSpec(path=path, title=t.title or path.stem, paper=t.paper,
                     runs_dir=Path(runs_dir or t.runs_dir or f"runs/{path.stem}"), split=t.split,
                     max_pairs=t.max_pairs,
                     evaluators=dict(t.evaluators), ground_truth=t.ground_truth, bleu=t.bleu, sets=tuple(t.set),
                     stages=tuple(stages), seeds=seeds or t.seeds, compare_to=t.compare_to, bootstrap=t.bootstrap,
                     case_study=t.case_study, jobs=t.jobs)


def _stage(entry: StageEntry, base: Path, errors: list[str]) -> StageSpec:
    recipe = base / entry.recipe if entry.recipe else None
    if recipe is not None and not recipe.is_file():
        errors.append(f"stage '{entry.name}': recipe {recipe} not found")
    return StageSpec(name=entry.name, kind=entry.train, recipe=recipe,
                     checkpoint=Path(entry.checkpoint) if entry.checkpoint else None, sets=tuple(entry.set),
                     reward=entry.reward, row=entry.row, label=entry.label or entry.name,
                     generator=entry.generator, rerank_with=entry.rerank_with, candidates=entry.candidates)


def _with_seeds(stages: list[StageSpec], seeds: int, table_sets: list[str]) -> list[StageSpec]:
    """Each trained generator stage, then its repeats `<name>-seed<k>` (k = 1 .. seeds-1) trained
    with runtime.seed = the recipe's seed + k: normal, resumable stages of their own."""
    if seeds == 1:
        return stages
    out = []
    for s in stages:
        out.append(s)
        if s.kind == "generator" and s.recipe is not None:
            base = resolve(s.recipe, dict(parse_assignment(x) for x in (*table_sets, *s.sets))).runtime.seed
            out += [replace(s, name=f"{s.name}-seed{k}", sets=(*s.sets, f"runtime.seed={base + k}"), seed_of=s.name)
                    for k in range(1, seeds)]
    return out


def _bad_sets(sets: list[str]) -> list[str]:
    return [f"set entry '{x}' is not 'section.key=value'" for x in sets if "=" not in x]


def _check_references(stages: list[StageSpec], table: TableSection, errors: list[str]) -> None:
    """Names are unique; rewards and evaluators name earlier retriever stages; rows exist in the paper."""
    seen: dict[str, StageSpec] = {}
    for s in stages:
        if s.name in seen:
            errors.append(f"stage name '{s.name}' is used twice")
        if s.reward:
            _refers(f"stage '{s.name}': reward", s.reward, seen, errors)
        if s.kind == "retriever" and (s.reward or s.row or s.generator or s.rerank_with):
            errors.append(f"stage '{s.name}': reward, row, generator and rerank_with belong to generator stages")
        if s.generator:
            _refers(f"stage '{s.name}': generator", s.generator, seen, errors, "generator")
        if s.rerank_with in seen:
            _refers(f"stage '{s.name}': rerank_with", s.rerank_with, seen, errors)
        if s.row and table.paper in PAPER_TABLES and s.row not in PAPER_TABLES[table.paper]["rows"]:
            close = difflib.get_close_matches(s.row, PAPER_TABLES[table.paper]["rows"], n=1)
            errors.append(f"stage '{s.name}': row '{s.row}' is not in the paper's {table.paper} table"
                          + (f" (did you mean '{close[0]}'?)" if close else ""))
        seen[s.name] = s
    for column, stage in table.evaluators.items():
        _refers(f"[table] evaluators.{column}", str(stage), seen, errors)


def _refers(where: str, name: str, seen: dict[str, StageSpec], errors: list[str], kind: str = "retriever") -> None:
    if name not in seen:
        close = difflib.get_close_matches(name, list(seen), n=1)
        errors.append(f"{where} = '{name}' is not an earlier stage" + (f" (did you mean '{close[0]}'?)" if close else ""))
    elif seen[name].kind != kind:
        errors.append(f"{where} = '{name}' is a {seen[name].kind} stage, not a {kind}")
