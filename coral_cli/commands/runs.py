"""Run folders: `coral runs show`, and how training commands open one (new runs refuse to
overwrite, --resume reuses)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from coral_cli.commands.console import out, print_json
from coral_cli.commands.options import Json, load_config
from coral_cli.errors import CoralError

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


def open_run(recipe: Optional[Path], sets: Optional[list[str]], flags: dict[str, Any], name: Optional[str],
             default_name: str, resume: bool, command: str) -> tuple[Any, Any]:
    """Resolve the config and the `RunDir`; a resumed run starts from its saved config.toml."""
    from coral_cli.runs import run_dir

    cfg = load_config(recipe, sets, flags)
    run = run_dir(cfg.runtime.runs_dir, name or default_name.format(**vars(cfg)))
    if resume:
        if not run.config_path.exists():
            raise CoralError(f"nothing to resume: {run.config_path} does not exist", "drop --resume to start the run")
        cfg = load_config(recipe or run.config_path, sets, flags)
    elif run.root.exists() and any(run.checkpoints.glob("*")):
        raise CoralError(f"run folder {run.root} already has checkpoints",
                         "pass --resume to continue it, or --name NEW for a fresh run")
    run.create(cfg, command)
    return cfg, run
