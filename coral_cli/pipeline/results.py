"""The results table of a table recipe: each row's metrics next to the paper's number for the same
row, as `results.json` (for scripts and CI) and `results.md` (for people). A row trained with
several seeds shows mean ± sd; with `compare_to`, cells that differ from that row at p < 0.05
(paired bootstrap) carry a †; the case study lists a few contexts with every row's reply."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from coral_cli import __version__
from coral_cli.atomic import atomic_write_text
from coral_cli.pipeline.paper_tables import COLUMN_TITLES, COLUMNS, PAPER_TABLES
from coral_cli.pipeline.paths import GROUND_TRUTH, report_path, run_of
from coral_cli.pipeline.case_study import case_study, case_study_markdown
from coral_cli.pipeline.significance import pooled_items, tests_against
from coral_cli.pipeline.spec import TableSpec


def build_results(spec: TableSpec) -> dict[str, Any]:
    """Rows in table order (ground truth first); a row not evaluated yet has `ours` = None."""
    paper = PAPER_TABLES[spec.paper]
    columns = list(COLUMNS) + [f"MAUDE-{c}" for c in spec.evaluators if f"MAUDE-{c}" not in COLUMNS] + ["R3"]
    rows = []
    if spec.ground_truth:
        rows.append(_row(spec, [GROUND_TRUTH], "Ground Truth", GROUND_TRUTH, columns, paper))
    bases = [s for s in spec.rows if not s.seed_of]
    base_items = pooled_items(spec, spec.stage(spec.compare_to)) if spec.compare_to else None
    for stage in bases:
        row = _row(spec, [s.name for s in spec.seeds_of(stage)], stage.label, stage.row, columns, paper)
        row["training"] = _training(spec, stage)
        if len(spec.seeds_of(stage)) > 1:
            row["seed_training"] = [_training(spec, s) for s in spec.seeds_of(stage)]
        row["vs"] = tests_against(spec, stage, base_items)
        rows.append(row)
    compared = next((s.label for s in bases if s.name == spec.compare_to), None)
    return {
        "title": spec.title, "recipe": str(spec.path), "split": spec.split, "paper": paper["source"],
        "bleu": spec.bleu, "columns": columns, "rows": rows, "seeds": spec.seeds,
        "compare_to": {"row": compared, "resamples": spec.bootstrap, "alpha": 0.05} if compared else None,
        "case_study": case_study(spec, bases),
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
        ours, sd, vs = row["ours"] or {}, row.get("sd") or {}, row.get("vs") or {}
        cells = [_cell(ours.get(c), c, sd.get(c)) + ("†" if vs.get(c, {}).get("significant") else "") for c in cols]
        lines.append("| " + " | ".join([row["label"], "ours" + (f" ({row['seeds']} seeds)" if row.get("seeds", 1) > 1 else ""),
                                         *cells]) + " |")
        if row["paper"]:  # rows the paper has no counterpart of (e.g. other models) get no empty line
            lines.append("| " + " | ".join(["", "paper", *[_cell(row["paper"].get(c), c) for c in cols]]) + " |")
    if results.get("compare_to"):
        c = results["compare_to"]
        lines += ["", f"† differs from {c['row']} at p < {c['alpha']} (paired bootstrap over seeds and test contexts; "
                      f"BLEU and Dist-n by approximate randomisation; {c['resamples']} resamples; results.json has "
                      "each p-value and interval)."]
    if results.get("seeds", 1) > 1:
        lines += ["", "Rows trained with several seeds show the mean ± the standard deviation over seeds."]
    trained = [(r["label"] + (f" (seed {k})" if "seed_training" in r else ""), t) for r in results["rows"]
               for k, t in enumerate(r.get("seed_training") or [r.get("training")]) if t and "steps" in t]
    if trained:
        lines += ["", "Training of each row (minutes: wall clock, first to last logged record):", "",
                  "| Model | steps | stopped | best validation | minutes |", "|---|---:|---|---:|---:|"]
        for label, t in trained:
            best = _cell(t.get("best"), "best") + (f" ({t['metric']})" if t.get("metric") and t.get("best") is not None else "")
            lines.append(f"| {label} | {t['steps'] if t['steps'] is not None else '—'} | {t['stopped'] or '—'} "
                         f"| {best} | {t['seconds'] / 60:.1f} |")
    lines += case_study_markdown(results.get("case_study") or [])
    return "\n".join(lines) + "\n"


def _row(spec: TableSpec, names: list[str], label: str, paper_row: str, columns: list[str], paper: dict) -> dict[str, Any]:
    """One row from the reports of its seeds (`names`): the mean, and ± sd over seeds when several
    are evaluated."""
    reports = [json.loads(p.read_text(encoding="utf-8")) for p in map(lambda n: report_path(spec, n), names) if p.exists()]
    ours, sd = None, None
    if reports:
        values = {c: [r["metrics"].get(c) for r in reports] for c in columns}
        ours = {c: (statistics.fmean(v) if None not in v else None) for c, v in values.items()}
        ours["count"] = reports[0]["counts"]["predictions"]
        if len(reports) > 1:
            sd = {c: (statistics.stdev(v) if None not in v else None) for c, v in values.items()}
    return {"name": names[0], "label": label, "paper_row": paper_row or None, "ours": ours, "sd": sd,
            "seeds": len(reports), "paper": paper["rows"].get(paper_row) if paper_row else None}


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


def _cell(value: Any, column: str, sd: float | None = None) -> str:
    if value is None:
        return "—"
    fmt = ".2f" if column == "avg_len" else ".4f"
    return f"{value:{fmt}}" + (f" ± {sd:{fmt}}" if sd is not None else "")
