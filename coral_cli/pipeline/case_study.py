"""The case study under a results table (the paper's Table 2): a seeded choice of test contexts
with every row's reply next to the reference, so the table's numbers can be checked by reading."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from coral_cli.pipeline.paths import predictions_path
from coral_cli.pipeline.spec import StageSpec, TableSpec

CONTEXT_TURNS = 3  # the last turns shown of each context


def case_study(spec: TableSpec, rows: list[StageSpec], seed: int = 0) -> list[dict[str, Any]]:
    """`spec.case_study` contexts drawn with `seed` from the pairs every row has predicted (each
    row's first seed): [{id, context, reference, replies: {label: reply}}]."""
    predictions = {}
    for stage in rows:
        path = predictions_path(spec, stage.name)
        if path.exists():
            predictions[stage.label] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if not predictions or not spec.case_study:
        return []
    count = min(len(p) for p in predictions.values())
    picks = sorted(np.random.default_rng(seed).choice(count, size=min(spec.case_study, count), replace=False).tolist())
    first = next(iter(predictions.values()))
    return [{"id": first[i].get("id", i), "context": first[i].get("context", [])[-CONTEXT_TURNS:],
             "reference": first[i].get("reference"),
             "replies": {label: rows_[i]["response"] for label, rows_ in predictions.items()}} for i in picks]


def case_study_markdown(cases: list[dict[str, Any]]) -> list[str]:
    if not cases:
        return []
    lines = ["", f"Case study: {len(cases)} test contexts (seeded choice; the last {CONTEXT_TURNS} turns shown):", ""]
    for n, case in enumerate(cases, 1):
        turns = " / ".join(case["context"])
        lines.append(f"{n}. **Context** ({case['id']}): {turns}")
        if case["reference"] is not None:
            lines.append(f"   - *Reference*: {case['reference']}")
        lines += [f"   - {label}: {reply}" for label, reply in case["replies"].items()]
    return lines
