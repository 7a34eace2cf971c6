"""`coral config show`: the resolved config (defaults < recipe < flags) as TOML."""

from __future__ import annotations

import typer

from coral_cli.commands.options import (
    DataDir, Dataset, Device, MaxContextTokens, MaxPairs, Recipe, Sets, Tokenizer, data_flags, load_config,
)

app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)


@app.command("show")
def show(
    recipe: Recipe = None,
    sets: Sets = None,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    max_context_tokens: MaxContextTokens = None,
    max_pairs: MaxPairs = None,
    tokenizer: Tokenizer = None,
    device: Device = None,
) -> None:
    """Print the resolved config as TOML, each key with its help; save it to use as a recipe."""
    from coral_cli.config import dump_toml

    flags = data_flags(dataset, data_dir, max_context_tokens, max_pairs, tokenizer)
    config = load_config(recipe, sets, {**flags, "runtime.device": device})
    header = f"coral config, resolved from {recipe or 'defaults'} and flags"
    typer.echo(dump_toml(config, header), nl=False)
