"""`coral retriever train|eval|score`: the response retrievers behind the R3 reward (paper §4.1)."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from coral_cli.commands.console import err, out, print_json
from coral_cli.commands.options import (
    DataDir, Dataset, Device, Json, MaxPairs, Recipe, Sets, Tokenizer, data_flags, load_config, open_input,
)

app = typer.Typer(help="Train, evaluate and query response retrievers (reward models).", no_args_is_help=True)

Checkpoint = Annotated[Path, typer.Option("--checkpoint", "-c", help="A retriever checkpoint folder.")]


@app.command("train")
def train(
    recipe: Recipe = None,
    sets: Sets = None,
    model: Annotated[Optional[str], typer.Option(help="Plugin: bert, esim, dmi (see coral plugins).")] = None,
    backbone: Annotated[Optional[str], typer.Option(help="'bundled', 'random', or a HF name/path.")] = None,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    max_pairs: MaxPairs = None,
    tokenizer: Tokenizer = None,
    negatives: Annotated[Optional[int], typer.Option(help="Random negatives per positive.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs.")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after N optimizer steps.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate.")] = None,
    batch_tokens: Annotated[Optional[int], typer.Option(help="Token budget per batch.")] = None,
    device: Device = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name: runs/<name>/. [default: retriever-<model>]")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue runs/<name>/ from its last checkpoint.")] = False,
) -> None:
    """Train a retriever on context-response pairs with random negatives; early-stop on R10@1."""
    from coral_cli.commands.progress import TrainingView
    from coral_cli.commands.runs import open_run
    from coral_cli.tasks.train import train_retriever

    flags = {
        **data_flags(dataset, data_dir, None, max_pairs, tokenizer),
        "retriever.model": model, "retriever.backbone": backbone, "retriever.negatives": negatives,
        "retriever.train.max_epochs": epochs, "retriever.train.max_steps": max_steps,
        "retriever.train.lr": lr, "retriever.train.batch_tokens": batch_tokens,
        "runtime.device": device, "runtime.seed": seed,
    }
    with open_run(recipe, sets, flags, name, "retriever-{retriever.model}", resume, "coral retriever train",
                  "retriever") as (cfg, run):
        err.print(f"run: {run.root}  model: {cfg.retriever.model}  backbone: {cfg.retriever.backbone}")
        with TrainingView(f"retriever {cfg.retriever.model}", ("loss", "acc", "infonce")) as view:
            train_retriever(cfg, run, [view], resume)


@app.command("eval")
def evaluate(
    checkpoint: Checkpoint,
    recipe: Recipe = None,
    sets: Sets = None,
    split: Annotated[str, typer.Option(help="Split to evaluate on.")] = "test",
    dataset: Dataset = None,
    data_dir: DataDir = None,
    max_pairs: MaxPairs = None,
    candidates: Annotated[int, typer.Option(help="Candidates per context (1 true + random negatives).", min=2)] = 10,
    device: Device = None,
    json: Json = False,
) -> None:
    """R10@1/2/5 and MRR (9 random negatives, fixed seed), ROC-AUC and accuracy; DSTC7 JSON: R100@k."""
    from coral_cli.rewards.eval_run import evaluate_checkpoint

    cfg = load_config(recipe, sets, {**data_flags(dataset, data_dir, None, max_pairs), "runtime.device": device})
    with err.status(f"scoring {split} of {cfg.data.dataset}"):
        report = evaluate_checkpoint(checkpoint, cfg, split, candidates)
    if json:
        print_json(report)
        return
    from rich.table import Table

    table = Table(title=f"{checkpoint} on {cfg.data.dataset}/{split}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report["metrics"].items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    out.print(table)


@app.command("score")
def score(
    checkpoint: Checkpoint,
    input: Annotated[str, typer.Option("--input", "-i", help="JSON lines file, or - for stdin.")] = "-",
    device: Device = None,
) -> None:
    """Score JSON lines {"context": [...], "response": "..."}: writes each line back with "score"."""
    from coral_cli.device import pick_device
    from coral_cli.rewards import load_reward
    from coral_cli.rewards.score_io import read_score_requests

    rows = read_score_requests(open_input(input), input)
    model = load_reward(checkpoint, pick_device(device or "auto"))
    scores = model.score([r["context"] for r in rows], [r["response"] for r in rows]).tolist() if rows else []
    for row, value in zip(rows, scores):
        typer.echo(jsonlib.dumps({**row, "score": round(value, 6)}, ensure_ascii=False))
