"""Run folders: `coral runs show`, and how training commands open one (new runs refuse to
overwrite, --resume continues under the same config, one process per folder)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from coral_cli.commands.console import out, print_json
from coral_cli.commands.options import Json, check_plugins, load_config
from coral_cli.errors import ConfigError, CoralError

app = typer.Typer(help="Inspect training runs.", no_args_is_help=True)


@app.command("show")
def show(
    run: Annotated[Path, typer.Argument(help="A run folder, e.g. runs/generator-ce.")],
    json: Json = False,
    width: Annotated[int, typer.Option(help="Chart width in columns.")] = 60,
) -> None:
    """Summarise a run (steps, best evaluation, checkpoints) and plot its curves."""
    from coral_cli.run_summary import plot_series, summarize_run
    from coral_cli.runs import RunDir

    summary = summarize_run(RunDir(run))
    if json:
        print_json(summary)
        return
    best = summary["best_eval"] or {}
    out.print(f"[bold]{summary['run']}[/]: {summary['steps']} steps, {summary['evals']} evaluations, "
              f"{summary['ended']}; checkpoints: {', '.join(summary['checkpoints']) or 'none'}")
    if best:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in best.items() if isinstance(v, float) and k != "time")
        out.print(f"best evaluation at step {best['step']}: {shown}")
    for name, points in summary["series"].items():
        values = [v for _, v in points]
        if len(points) < 2 or min(values) == max(values) or name.endswith(("tokens_per_s", "/lr")):
            continue
        out.print(f"\n[cyan]{name}[/]  first {values[0]:.4g}  last {values[-1]:.4g}  "
                  f"min {min(values):.4g}  max {max(values):.4g}  (steps {points[0][0]}..{points[-1][0]})")
        for line in plot_series(points, width=width):
            out.print(line)


@contextmanager
def open_run(recipe: Optional[Path], sets: Optional[list[str]], flags: dict[str, Any], name: Optional[str],
             default_name: str, resume: bool, command: str, kind: str) -> Iterator[tuple[Any, Any]]:
    """Resolve the config, lock the run folder for the block and write its config.toml; yields (cfg, run).

    A new run refuses a folder with checkpoints. `--resume` starts from the saved config.toml
    (or the recipe) with the flags on top, and refuses, before writing anything, a change to any
    key that shapes what a `kind` training trains (`config_drift`): device, folders, logging and
    a raised max_steps / max_epochs are fine. Ctrl-C inside the block prints how to resume.
    """
    from coral_cli.commands.progress import interrupt_hint
    from coral_cli.config import resolve
    from coral_cli.config.drift import config_drift
    from coral_cli.generator.loading import adopt_init_architecture
    from coral_cli.generator.pretrained.checkpoint import check_resume_base
    from coral_cli.runs import run_dir
    from coral_cli.training.state import check_resumable

    cfg = load_config(recipe, sets, flags)
    check_plugins(cfg, kind)
    adopt = adopt_init_architecture if kind == "generator" else (lambda c: c)
    run = run_dir(cfg.runtime.runs_dir, name or default_name.format(**vars(cfg)))
    if resume and not run.config_path.exists():
        raise CoralError(f"nothing to resume: {run.config_path} does not exist", "drop --resume to start the run")
    with run.lock():
        if resume:
            cfg = adopt(load_config(recipe or run.config_path, sets, flags))
            drift = config_drift(resolve(run.config_path), cfg, kind)
            if drift:
                raise ConfigError(f"--resume would change what {run.root} trains: {'; '.join(drift)}",
                                  "drop those flags, or start a new run with --name NEW")
            if check_resumable(run) and kind == "generator":  # now, not after the data and model are built
                check_resume_base(run.checkpoint("last"))  # a LoRA run's base must not have changed
        elif any(run.checkpoints.glob("*")):
            raise CoralError(f"run folder {run.root} already has checkpoints",
                             "pass --resume to continue it, or --name NEW for a fresh run")
        cfg = adopt(cfg)
        run.create(cfg, command)
        again = f"{command} --name {shlex.quote(run.root.name)} --resume"
        if cfg.runtime.runs_dir != "runs":
            again += f" --set runtime.runs_dir={shlex.quote(str(cfg.runtime.runs_dir))}"
        with interrupt_hint(run, again, f"delete {run.root} and run the same command to train it again"):
            yield cfg, run
