"""The results table of a table recipe: each row's metrics next to the paper's number for the same
row, as `results.json` (for scripts and CI) and `results.md` (for people)."""

from __future__ import annotations

import json
import time
from typing import Any

from coral_cli import __version__
from coral_cli.atomic import atomic_write_text
from coral_cli.pipeline.paper_tables import COLUMN_TITLES, COLUMNS, PAPER_TABLES
from coral_cli.pipeline.paths import GROUND_TRUTH, report_path, run_of
from coral_cli.pipeline.spec import TableSpec


def build_results(spec: TableSpec) -> dict[str, Any]:
    """Rows in table order (ground truth first); a row not evaluated yet has `ours` = None."""
    paper = PAPER_TABLES[spec.paper]
    columns = list(COLUMNS) + [f"MAUDE-{c}" for c in spec.evaluators if f"MAUDE-{c}" not in COLUMNS] + ["R3"]
    rows = []
    if spec.ground_truth:
        rows.append(_row(spec, GROUND_TRUTH, "Ground Truth", GROUND_TRUTH, columns, paper))
    for stage in spec.rows:
        row = _row(spec, stage.name, stage.label, stage.row, columns, paper)
        row["training"] = _training(spec, stage)
        rows.append(row)
    return {
        "title": spec.title, "recipe": str(spec.path), "split": spec.split, "paper": paper["source"],
        "bleu": spec.bleu, "columns": columns, "rows": rows,
        "evaluators": {c: s for c, s in spec.evaluators.items()},
        "coral_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def write_results(spec: TableSpec, results: dict[str, Any]) -> None:
    spec.runs_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec.runs_dir / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(spec.runs_dir / "results.md", results_markdown(results))


def results_markdown(results: dict[str, Any]) -> str:
    """A line per model, then the paper's line for rows it has (— where it lacks a value)."""
    cols = results["columns"]
    head = ["Model", "", *[COLUMN_TITLES.get(c, c) for c in cols]]
    lines = [f"### {results['title']}", "",
             f"Split: {results['split']}; BLEU: {results['bleu']}; paper: {results['paper']}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * len(cols)]
    for row in results["rows"]:
        ours = row["ours"] or {}
        lines.append("| " + " | ".join([row["label"], "ours", *[_cell(ours.get(c), c) for c in cols]]) + " |")
        if row["paper"]:  # rows the paper has no counterpart of (e.g. other models) get no empty line
            lines.append("| " + " | ".join(["", "paper", *[_cell(row["paper"].get(c), c) for c in cols]]) + " |")
    trained = [r for r in results["rows"] if r.get("training") and "steps" in r["training"]]
    if trained:
        lines += ["", "Training of each row (minutes: wall clock, first to last logged record):", "",
                  "| Model | steps | stopped | best validation | minutes |", "|---|---:|---|---:|---:|"]
        for row in trained:
            t = row["training"]
            best = _cell(t.get("best"), "best") + (f" ({t['metric']})" if t.get("metric") and t.get("best") is not None else "")
            lines.append(f"| {row['label']} | {t['steps'] if t['steps'] is not None else '—'} | {t['stopped'] or '—'} "
                         f"| {best} | {t['seconds'] / 60:.1f} |")
    return "\n".join(lines) + "\n"


def _row(spec: TableSpec, name: str, label: str, paper_row: str, columns: list[str], paper: dict) -> dict[str, Any]:
    path = report_path(spec, name)
    ours = None
    if path.exists():
        report = json.loads(path.read_text(encoding="utf-8"))
        metrics = report["metrics"]
        ours = {c: metrics.get(c) for c in columns}
        ours["count"] = report["counts"]["predictions"]
    return {"name": name, "label": label, "paper_row": paper_row or None, "ours": ours,
            "paper": paper["rows"].get(paper_row) if paper_row else None}


def _training(spec: TableSpec, stage: Any) -> dict[str, Any] | None:
    """Steps, stop reason, best validation value, and wall-clock seconds from the first logged record
    to the last (a pause between an interruption and its resume counts too)."""
    if stage.checkpoint is not None:
        return {"checkpoint": str(stage.checkpoint)}
    records = run_of(spec, stage).read_metrics()
    if not records:
        return None
    end = next((r for r in reversed(records) if r.get("event") == "end"), {})
    return {"steps": end.get("step"), "stopped": end.get("reason"), "best": end.get("best"), "metric": end.get("metric"),
            "seconds": round(records[-1]["time"] - records[0]["time"], 1)}


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if column == "avg_len" else f"{value:.4f}"
