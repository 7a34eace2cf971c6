"""Rendering of the length checks of `coral evaluate` (`metrics.length_control`): a line under a
report's table, rows in the compare table, and the `compare --length-matched` table."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from coral_cli.commands.console import out


def length_line(report: dict[str, Any]) -> str | None:
    """'length: 15.3 words, 1.50x the references' 10.2; r(length, score): R3 +0.42, ...'"""
    length = report.get("length")
    if not isinstance(length, dict):
        return None
    text = f"length: {length['mean_words']:.1f} words"
    if length.get("ratio") is not None:
        text += f", {length['ratio']:.2f}x the references' {length['reference_mean_words']:.1f}"
    if length.get("corr"):
        text += "; r(length, score): " + ", ".join(f"{k} {_r(v)}" for k, v in length["corr"].items())
    return text


def length_rows(loaded: list[dict[str, Any]]) -> list[list[str]]:
    """Compare-table rows: each report's length ratio to the references and r(length, score)."""
    lengths = [r.get("length") if isinstance(r.get("length"), dict) else {} for r in loaded]
    rows = []
    if any(x.get("ratio") is not None for x in lengths):
        rows.append(["length ×ref"] + [f"{x['ratio']:.2f}x" if x.get("ratio") is not None else "-" for x in lengths])
    for name in dict.fromkeys(k for x in lengths for k in x.get("corr") or {}):
        rows.append([f"r(length, {name})"] + [_r(x["corr"][name]) if name in (x.get("corr") or {}) else "-"
                                               for x in lengths])
    return rows


def render_length_matched(labels: list[str], results: list[dict[str, Any]], corpus: list[str],
                          resamples: int, markdown: bool) -> None:
    """One row per (report, metric): raw, length-matched and length-adjusted difference vs the first."""
    if not results:  # one report: nothing to compare with
        return
    head = ["report", "metric", "raw Δ", "length-matched Δ", "length-adjusted Δ"]
    rows = [[labels[i + 1], name, *(_cell(m.get(v)) for v in ("raw", "matched", "adjusted"))]
            for i, res in enumerate(results) for name, m in res["metrics"].items()]
    notes = [f"{labels[i + 1]}: {a:.1f} vs {b:.1f} words; buckets at {_edges(res['edges'])}; "
             f"{res['coverage']:.0%} of {labels[0]}'s replies in buckets both rows reach; "
             f"matched rows still {_gap(res['length_gap'])} words apart"
             for i, res in enumerate(results) for a, b in [res["mean_words"]]]
    how = ("differences vs the first; matched: within deciles of both rows' pooled reply lengths, weighted by "
           "the first row's share per bucket; adjusted (learned scores): system coefficient of OLS "
           "score ~ system + length")
    if resamples:
        how += (f"; [95 % interval] p from {resamples} paired resamples of the contexts (bucket edges fixed), "
                "* p < 0.05")
    if corpus:
        how += f". Corpus-level, not length-matched: {', '.join(corpus)}"
    if markdown:
        typer.echo("\n| " + " | ".join(head) + " |")
        typer.echo("|" + "---|" * len(head))
        for row in rows:
            typer.echo("| " + " | ".join(row) + " |")
        typer.echo("\n" + how + ".\n" + "\n".join(notes))
        return
    from rich.table import Table

    table = Table(title=f"length-controlled ({escape(how)})", title_justify="left",
                  caption=escape("\n".join(notes)), caption_justify="left")
    for h in head:
        table.add_column(h, justify="left" if h in ("report", "metric") else "right")
    for row in rows:
        table.add_row(*(escape(c) for c in row))
    out.print(table)


def _cell(est: dict[str, Any] | None) -> str:
    if not est:
        return "-"
    text = "n/a" if est["diff"] is None else f"{est['diff']:+.4f}"
    if est.get("ci"):
        text += f" [{est['ci'][0]:+.4f}, {est['ci'][1]:+.4f}] p={est['p']:.3f}" + ("*" if est["p"] < 0.05 else "")
    return text


def _gap(gap: float | None) -> str:
    return "n/a" if gap is None else f"{gap:+.2f}"


def _edges(edges: list[float]) -> str:
    return ", ".join(f"{e:g}" for e in edges) if edges else "none (one bucket)"


def _r(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"
