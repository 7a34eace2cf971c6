"""The `coral` Typer app: composes the sub-apps and turns `CoralError`s into one line, exit 2."""

from __future__ import annotations

import errno
import os
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape
from typer.core import TyperGroup

from coral_cli.commands import annotate as annotate_cmd
from coral_cli.commands import bench as bench_cmd
from coral_cli.commands import chat as chat_cmd
from coral_cli.commands import config as config_cmd
from coral_cli.commands import coral as coral_cmd
from coral_cli.commands import data as data_cmd
from coral_cli.commands import env as env_cmd
from coral_cli.commands import evaluate as evaluate_cmd
from coral_cli.commands import export as export_cmd
from coral_cli.commands import generate as generate_cmd
from coral_cli.commands import plugins as plugins_cmd
from coral_cli.commands import recipe as recipe_cmd
from coral_cli.commands import retriever as retriever_cmd
from coral_cli.commands import runs as runs_cmd
from coral_cli.commands.console import err
from coral_cli.errors import ENVIRONMENT_ERRNOS, CoralError, output_error

try:  # recent typer ships its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_errors

DEBUG_ENV = "CORAL_DEBUG"
NO_ARGS_HELP = getattr(click_errors, "NoArgsIsHelpError", ())  # bare `coral` / `coral data`: help, exit 2


class CoralGroup(TyperGroup):
    """The one place user errors become a clean message; `--debug` keeps the traceback.

    Sub-apps are invoked (and parse their arguments) inside `invoke`, so their usage errors and
    `CoralError`s pass through here too.
    """

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click_errors.UsageError as exc:
            _usage_exit(exc)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click_errors.UsageError as exc:
            _usage_exit(exc)
        except CoralError as exc:
            _error_exit(exc)
        except OSError as exc:  # a full or read-only disk is the user's to fix; other OSErrors are bugs
            if exc.errno not in ENVIRONMENT_ERRNOS or os.environ.get(DEBUG_ENV) == "1":
                raise
            _error_exit(output_error(exc, action="access" if exc.errno == errno.EACCES else "write"))


def _error_exit(exc: CoralError) -> NoReturn:
    if os.environ.get(DEBUG_ENV) == "1":
        raise exc
    err.print(f"[bold red]error:[/] {exc.message}", markup=True, soft_wrap=True)
    if exc.hint:
        err.print(f"[yellow]fix:[/] {exc.hint}", soft_wrap=True)
    raise typer.Exit(exc.exit_code) from None


def _usage_exit(exc: click_errors.UsageError) -> NoReturn:
    """click's usage errors (no such option, missing argument, bad value) in the same two lines."""
    if isinstance(exc, NO_ARGS_HELP):
        raise exc
    command = exc.ctx.command_path if exc.ctx else "coral"
    if exc.ctx:
        err.print(exc.ctx.get_usage(), markup=False, soft_wrap=True)
    err.print(f"[bold red]error:[/] {escape(exc.format_message())}", markup=True, soft_wrap=True)
    err.print(f"[yellow]fix:[/] run '{escape(command)} --help' for the options", soft_wrap=True)
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
app.add_typer(annotate_cmd.app, name="annotate")
app.command("bench")(bench_cmd.bench)
app.command("export")(export_cmd.export)
app.command("env")(env_cmd.env)
app.command("plugins")(plugins_cmd.plugins)


def main() -> None:
    """Console-script entry point."""
    app()
