"""`coral data stats|show`: look at the (context, response) pairs a run trains and tests on."""

from __future__ import annotations

import json as jsonlib
from typing import Annotated, Any, Optional

import typer

from coral_cli.commands.console import err, out, print_json
from coral_cli.commands.options import (
    DataDir, Dataset, Json, MaxContextTokens, MaxPairs, Recipe, Sets, Tokenizer, data_flags, load_config,
)

app = typer.Typer(help="Inspect datasets: sizes, lengths, examples.", no_args_is_help=True)

Split = Annotated[Optional[list[str]], typer.Option("--split", help="Split(s) to include (repeatable).")]


@app.command("stats")
def stats(
    recipe: Recipe = None,
    sets: Sets = None,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    split: Split = None,
    max_context_tokens: MaxContextTokens = None,
    max_pairs: MaxPairs = None,
    tokenizer: Tokenizer = None,
    json: Json = False,
) -> None:
    """Dialogues, pairs, utterances and token-length percentiles per split."""
    from coral_cli.data.sources import available_splits
    from coral_cli.data.stats import dataset_stats
    from coral_cli.tokenizer import load_tokenizer

    cfg = load_config(recipe, sets, data_flags(dataset, data_dir, max_context_tokens, max_pairs, tokenizer))
    splits = tuple(split) if split else available_splits(cfg.data)
    with err.status(f"reading and tokenizing {cfg.data.dataset} ({', '.join(splits)})"):
        report = dataset_stats(cfg.data, load_tokenizer(cfg.tokenizer.name), splits)
    if json:
        print_json(report)
    else:
        _render_stats(report)


@app.command("show")
def show(
    recipe: Recipe = None,
    sets: Sets = None,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
    n: Annotated[int, typer.Option("-n", help="How many examples.", min=1)] = 5,
    offset: Annotated[int, typer.Option(help="Index of the first example.", min=0)] = 0,
    random: Annotated[bool, typer.Option("--random", help="Pick examples at random (seeded).")] = False,
    seed: Annotated[int, typer.Option(help="Seed for --random.")] = 0,
    json: Json = False,
) -> None:
    """Pretty-print examples: context utterances by speaker, then the response."""
    from coral_cli.data.sources import load_pairs

    cfg = load_config(recipe, sets, data_flags(dataset, data_dir))
    pairs = load_pairs(cfg.data, split)
    if random:
        pairs = pairs.shuffle(seed=seed)
    rows = pairs.select(range(min(offset, len(pairs)), min(offset + n, len(pairs))))
    if json:
        for row in rows:
            typer.echo(jsonlib.dumps(row, ensure_ascii=False))
        return
    for row in rows:
        _render_pair(row)


def _render_stats(report: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title=f"{report['dataset']}: {report['source']}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("split", "dialogues", "pairs", "ctx\nutts", "ctx tokens\np50 p90 max",
                "resp tokens\np50 p90 max", "ctx\ntrunc."):
        table.add_column(col, justify="left" if col == "split" else "right", no_wrap=True)
    for s in report["splits"]:
        c, r = s["context_tokens"], s["response_tokens"]
        table.add_row(
            s["split"], f"{s['dialogues']:,}", f"{s['pairs']:,}",
            f"{s['context_utterances_mean']:.2f}",
            f"{c['p50']:.0f} {c['p90']:.0f} {c['max']}",
            f"{r['p50']:.0f} {r['p90']:.0f} {r['max']}",
            f"{100 * s['context_truncated_share']:.1f}%",
        )
    out.print(table)
    if report.get("min_context_turns"):
        rule = ", ".join(f"{k} >= {v}" for k, v in report["min_context_turns"].items())
        out.print(f"preceding utterances per response: {rule}")
    out.print(f"token budgets: context {report['max_context_tokens']} (left-truncated), "
              f"response {report['max_response_tokens']}")


def _render_pair(row: dict[str, Any]) -> None:
    from rich.panel import Panel
    from rich.text import Text

    text = Text()
    n = len(row["context"])
    for i, utt in enumerate(row["context"]):
        speaker = "AB"[(row["turn"] - n + i) % 2]
        text.append(f"{speaker}: ", style="bold cyan" if speaker == "A" else "bold magenta")
        text.append(utt + "\n")
    speaker = "AB"[row["turn"] % 2]
    text.append(f"{speaker} → ", style="bold green")
    text.append(row["response"], style="green")
    out.print(Panel(text, title=f"{row['dialogue_id']} · turn {row['turn']}", title_align="left"))
