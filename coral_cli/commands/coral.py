"""`coral coral train`: train the generator with the CE baseline (and CORAL, paper eq. 3)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from coral_cli.commands.console import err
from coral_cli.commands.options import (
    DataDir, Dataset, Device, MaxContextTokens, MaxPairs, Recipe, Sets, Tokenizer, data_flags,
)

app = typer.Typer(help="Train dialogue generators (CE baseline, CORAL).", no_args_is_help=True)


@app.command("train")
def train(
    recipe: Recipe = None,
    sets: Sets = None,
    loss: Annotated[Optional[str], typer.Option(help="ce (cross-entropy baseline).")] = None,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    max_pairs: MaxPairs = None,
    max_context_tokens: MaxContextTokens = None,
    tokenizer: Tokenizer = None,
    init: Annotated[Optional[str], typer.Option(help="Start from this generator checkpoint.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs. [default: 50]")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after N optimizer steps.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate. [default: 1e-4]")] = None,
    batch_tokens: Annotated[Optional[int], typer.Option(help="Token budget per batch.")] = None,
    grad_accum: Annotated[Optional[int], typer.Option(help="Batches per optimizer step.")] = None,
    device: Device = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name: runs/<name>/. [default: generator-<loss>]")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue runs/<name>/ from its last checkpoint.")] = False,
) -> None:
    """Train a seq2seq generator; checkpoints each epoch, best/ by validation, resumable."""
    from coral_cli.commands.progress import TrainingView
    from coral_cli.commands.runs import open_run
    from coral_cli.generator.train import train_generator

    flags = {
        **data_flags(dataset, data_dir, max_context_tokens, max_pairs, tokenizer),
        "objective.loss": loss, "generator.init": init,
        "train.max_epochs": epochs, "train.max_steps": max_steps, "train.lr": lr,
        "train.batch_tokens": batch_tokens, "train.grad_accum": grad_accum,
        "runtime.device": device, "runtime.seed": seed,
    }
    cfg, run = open_run(recipe, sets, flags, name, "generator-{objective.loss}", resume, "coral coral train")
    g = cfg.generator
    err.print(f"run: {run.root}  loss: {cfg.objective.loss}  model: {g.encoder_layers}+{g.decoder_layers} layers, "
              f"d={g.d_model}, {g.heads} heads")
    with TrainingView(f"generator {cfg.objective.loss}", ("loss", "nll")) as view:
        train_generator(cfg, run, [view], resume)
