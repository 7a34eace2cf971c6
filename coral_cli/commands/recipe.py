"""`coral recipe run|plan`: a paper table (retrievers -> generators -> generate -> evaluate) in one
command, resumable; see coral_cli/pipeline/spec.py for the table recipe format."""

from __future__ import annotations

import contextlib
import functools
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from coral_cli.commands.console import err, out, print_json
from coral_cli.commands.options import Json, Sets

app = typer.Typer(help="Reproduce a results table of the paper from a table recipe.", no_args_is_help=True)

Table = Annotated[Path, typer.Argument(help="A table recipe, e.g. recipes/dailydialog/table1.toml.")]
RunsDir = Annotated[Optional[Path], typer.Option(help="Put the runs here instead of the recipe's runs_dir.")]
Seeds = Annotated[Optional[int], typer.Option(help="Training seeds per trained generator row (overrides [table] seeds): "
                                                   "rows show mean ± sd.", min=1)]


@app.command("run")
def run(
    table: Table,
    sets: Sets = None,
    only: Annotated[Optional[list[str]], typer.Option(help="Run only this stage (repeatable; 'ground-truth' too).")] = None,
    restart: Annotated[Optional[list[str]], typer.Option(help="Delete this stage's run and train it again (repeatable).")] = None,
    runs_dir: RunsDir = None,
    seeds: Seeds = None,
    jobs: Annotated[Optional[int], typer.Option(help="Run this many stages side by side, each in its own process with "
                                                     "its share of the CPU threads (overrides [table] jobs).", min=1)] = None,
    phase: Annotated[Optional[str], typer.Option(hidden=True, help="Run one phase (train, generate, evaluate) of the "
                                                                   "one --only stage: what each side-by-side job runs.")] = None,
    json: Json = False,
) -> None:
    """Run every stage in order: finished ones are skipped, interrupted ones resume; then write
    results.json and results.md with each row next to the paper's."""
    from coral_cli.errors import ConfigError
    from coral_cli.pipeline.results import results_markdown
    from coral_cli.pipeline.runner import TableRunner, check_stage_names
    from coral_cli.pipeline.spec import read_table

    spec = read_table(table, runs_dir, seeds)
    table_args = [str(table), *(["--runs-dir", str(runs_dir)] if runs_dir else []),
                  *(["--seeds", str(seeds)] if seeds else []), *(a for s in sets or () for a in ("--set", s))]
    again = shlex.join(["coral", "recipe", "run", *table_args])  # what Ctrl-C says resumes
    view = functools.partial(_train_view, spec, again)
    from coral_cli.commands.progress import count_progress

    if phase is not None:  # one task of a side-by-side run, in its own process
        from coral_cli.pipeline.parallel import apply_thread_caps

        apply_thread_caps()  # before torch does any parallel work
    runner = TableRunner(spec, _notify, view, tuple(restart or ()), tuple(sets or ()), count_progress)
    resume = shlex.join([*shlex.split(again), *(a for s in only or () for a in ("--only", s)),
                         *(["--jobs", str(jobs)] if jobs else [])])
    if phase is not None:
        if len(only or []) != 1:
            raise ConfigError("--phase runs one stage's phase", "name the stage with exactly one --only")
        with _interrupted(f"{only[0]} ({phase})", resume):
            runner.run_task(only[0], phase)
        return
    jobs = jobs or spec.jobs
    check_stage_names(spec, "--only", tuple(only or ()))
    picked = sum(1 for s in spec.stages if s.name in (only or ()))
    err.print(f"[bold]{spec.title}[/]: " + (f"{picked} of " if only else "") + f"{len(spec.stages)} stages -> "
              f"{spec.runs_dir}" + (f", {jobs} side by side" if jobs > 1 else ""))
    with _interrupted(spec.title, resume):
        if jobs > 1:
            launch = functools.partial(_phase_command, table_args, restart or [])
            results = runner.run_side_by_side(jobs, launch, tuple(only or ()))
        else:
            results = runner.run(tuple(only or ()))
    if json:
        print_json(results)
        return
    typer.echo(results_markdown(results))
    err.print(f"written: {spec.runs_dir / 'results.json'}, {spec.runs_dir / 'results.md'}")


@app.command("plan")
def plan(table: Table, runs_dir: RunsDir = None, seeds: Seeds = None, json: Json = False) -> None:
    """List the stages with their state (done, interrupted, new) without running anything."""
    from coral_cli.pipeline.paths import checkpoint_of
    from coral_cli.pipeline.runner import check_stage_sets, stage_state
    from coral_cli.pipeline.spec import read_table

    spec = read_table(table, runs_dir, seeds)
    check_stage_sets(spec)
    rows = [{"stage": s.name, "train": s.kind, "state": (st := stage_state(spec, s)).state, "detail": st.detail,
             "checkpoint": str(checkpoint_of(spec, s)), "reward": s.reward or None, "row": s.row or None}
            for s in spec.stages]
    if json:
        print_json({"title": spec.title, "runs_dir": str(spec.runs_dir), "stages": rows})
        return
    from rich.table import Table as RichTable

    view = RichTable(title=f"{spec.title} ({spec.runs_dir})", title_justify="left")
    for col in ("stage", "train", "state", "detail", "reward", "row"):
        view.add_column(col)
    for r in rows:
        view.add_row(*(str(r[c] or "") for c in ("stage", "train", "state", "detail", "reward", "row")))
    out.print(view)


def _phase_command(table_args: list[str], restart: list[str], task: Any) -> list[str]:
    """The command line that runs one task of a side-by-side table run in a process of its own:
    the parent's table, runs folder, seeds and --set, one stage, one phase."""
    import sys

    return [sys.executable, "-m", "coral_cli", "recipe", "run", *table_args, "--only", task.stage, "--phase", task.phase,
            *(["--restart", task.stage] if task.stage in restart and task.phase == "train" else [])]


def _notify(stage: str, message: str) -> None:
    err.print(f"[cyan]{stage}[/]: {message}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _interrupted(what: str, resume: str) -> Iterator[None]:
    """Ctrl-C (or a SIGINT to this process alone) prints one line: what stopped, that finished
    stages are kept, and the command that resumes; exit 130 (128 + SIGINT), as training's."""
    try:
        yield
    except KeyboardInterrupt as exc:
        stopped = getattr(exc, "stopped", None)  # the side-by-side tasks that were running
        detail = f" (stopped {', '.join(stopped)})" if stopped else ""
        err.print(f"interrupted: {what}{detail}; finished stages are kept; resume with: {resume}",
                  highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(130) from None


@contextlib.contextmanager
def _train_view(spec: Any, again: str, stage: Any, cfg: Any) -> Iterator[list[Any]]:
    from coral_cli.commands.progress import TrainingView, interrupt_hint
    from coral_cli.pipeline.paths import run_of

    if stage.kind == "retriever":
        title, keys = f"{stage.name} ({cfg.retriever.model})", ("loss", "acc", "infonce")
    else:
        coral = cfg.objective.loss == "coral"
        title, keys = stage.name, ("loss", "r3_pos", "r3_neg", "f_R") if coral else ("loss", "nll")
    with interrupt_hint(run_of(spec, stage), again, f"'{again}' trains it again from the start"), \
            TrainingView(title, keys) as view:
        yield [view]
