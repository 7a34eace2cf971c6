"""Summaries of a run folder's metrics.jsonl: what `coral runs show` reports and plots."""

from __future__ import annotations

from typing import Any

from coral_cli.errors import CoralError
from coral_cli.runs import RunDir

SKIP = {"time", "event", "step", "epoch", "improved", "contexts", "candidates", "seed"}


def summarize_run(run: RunDir) -> dict[str, Any]:
    """Steps, last training stats, every evaluation's metrics, the best one and the end reason."""
    if not run.config_path.exists():
        raise CoralError(f"not a run folder: {run.root} (no config.toml)", "pass runs/<name> of a training run")
    records = current_attempt(run.read_metrics())
    steps = [r for r in records if r.get("event") == "step"]
    evals = [r for r in records if r.get("event") == "eval"]
    end = next((r for r in reversed(records) if r.get("event") == "end"), None)
    return {
        "run": str(run.root),
        "steps": steps[-1]["step"] if steps else 0,
        "last": {k: v for k, v in (steps[-1] if steps else {}).items() if k not in SKIP},
        "evals": len(evals),
        "best_eval": next((e for e in reversed(evals) if e.get("improved")), None),
        "ended": end["reason"] if end else "running or interrupted",
        "checkpoints": sorted(p.name for p in run.checkpoints.iterdir()) if run.checkpoints.exists() else [],
        "series": {
            **{f"train/{k}": [(r["step"], r[k]) for r in steps if isinstance(r.get(k), (int, float))]
               for k in _numeric_keys(steps)},
            **{f"eval/{k}": [(r["step"], r[k]) for r in evals if isinstance(r.get(k), (int, float))]
               for k in _numeric_keys(evals)},
        },
    }


def current_attempt(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records each step's final attempt logged, so every step is counted and plotted once.

    A resume rewrites metrics.jsonl itself (`RunDir.rewind_metrics`); this also reads files from
    before that: after a `resume` marker at step S, or a step logged again, the earlier attempt's
    records from there on are dropped.
    """
    out: list[dict[str, Any]] = []
    last = 0  # highest step of a kept step record
    for r in records:
        step = r.get("step") if isinstance(r.get("step"), int) else None
        if step is not None and (r.get("event") == "resume" or (r.get("event") == "step" and step <= last)):
            cut = step if r.get("event") == "resume" else step - 1
            out = [x for x in out if x.get("event") != "end" and (x.get("step") or 0) <= cut]
            last = max((x["step"] for x in out if x.get("event") == "step"), default=0)
        if r.get("event") == "step" and step is not None:
            last = max(last, step)
        out.append(r)
    return out


def _numeric_keys(records: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if k not in SKIP and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.setdefault(k, None)
    return list(keys)


def plot_series(points: list[tuple[int, float]], width: int = 60, height: int = 5) -> list[str]:
    """A block-character chart, `height` rows of `width` columns (steps bucketed left to right)."""
    if not points:
        return []
    values = [v for _, v in points]
    cols = min(width, len(values))
    buckets = [values[i * len(values) // cols : (i + 1) * len(values) // cols] for i in range(cols)]
    col_values = [sum(b) / len(b) for b in buckets]
    lo, hi = min(col_values), max(col_values)
    span = (hi - lo) or 1.0
    levels = [round((v - lo) / span * (height * 8 - 1)) for v in col_values]
    blocks = " ▁▂▃▄▅▆▇█"
    rows = []
    for row in range(height - 1, -1, -1):
        line = ""
        for lvl in levels:
            fill = lvl + 1 - row * 8
            line += blocks[max(0, min(8, fill))]
        rows.append(line)
    return rows
