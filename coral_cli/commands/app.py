"""The `coral` Typer app: composes the sub-apps and turns `CoralError`s into one line, exit 2."""

from __future__ import annotations

import os
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from coral_cli.commands import bench as bench_cmd
from coral_cli.commands import chat as chat_cmd
from coral_cli.commands import config as config_cmd
from coral_cli.commands import coral as coral_cmd
from coral_cli.commands import data as data_cmd
from coral_cli.commands import env as env_cmd
from coral_cli.commands import evaluate as evaluate_cmd
from coral_cli.commands import generate as generate_cmd
from coral_cli.commands import plugins as plugins_cmd
from coral_cli.commands import recipe as recipe_cmd
from coral_cli.commands import retriever as retriever_cmd
from coral_cli.commands import runs as runs_cmd
from coral_cli.commands.console import err
from coral_cli.errors import CoralError

DEBUG_ENV = "CORAL_DEBUG"


class CoralGroup(TyperGroup):
    """The one place user errors become a clean message; `--debug` keeps the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CoralError as exc:
            if os.environ.get(DEBUG_ENV) == "1":
                raise
            err.print(f"[bold red]error:[/] {exc.message}", markup=True, soft_wrap=True)
            if exc.hint:
                err.print(f"[yellow]fix:[/] {exc.hint}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=CoralGroup,
    name="coral",
    help="Train dialogue response generators with the CORAL loss; evaluate, inspect and chat.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


app.add_typer(data_cmd.app, name="data")
app.add_typer(config_cmd.app, name="config")
app.add_typer(retriever_cmd.app, name="retriever")
app.add_typer(coral_cmd.app, name="coral")
app.command("generate")(generate_cmd.generate)
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(recipe_cmd.app, name="recipe")
app.add_typer(evaluate_cmd.app, name="evaluate")
app.command("chat")(chat_cmd.chat)
app.command("bench")(bench_cmd.bench)
app.command("env")(env_cmd.env)
app.command("plugins")(plugins_cmd.plugins)


def main() -> None:
    """Console-script entry point."""
    app()
