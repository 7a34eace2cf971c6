"""Which rows of a results table really differ from the reference row (`[table] compare_to`): the
paired tests of `metrics.bootstrap` on each row's training seeds pooled, with the seeds resampled
as well as the test contexts, so an interval reflects which seeds were trained and which contexts
were drawn (BLEU and Dist-n: p by approximate randomisation over runs and contexts)."""

from __future__ import annotations

from typing import Any

from coral_cli.metrics.bootstrap import items_path, paired_bootstrap, pool_items, read_items
from coral_cli.pipeline.paths import report_path
from coral_cli.pipeline.spec import StageSpec, TableSpec


def pooled_items(spec: TableSpec, stage: StageSpec) -> dict[str, Any] | None:
    """The per-context scores of every seed of `stage`, pooled; None until all are evaluated."""
    paths = [report_path(spec, s.name) for s in spec.seeds_of(stage)]
    if not all(items_path(p).exists() for p in paths):
        return None
    return pool_items([read_items(p) for p in paths])


def tests_against(spec: TableSpec, stage: StageSpec, base: dict[str, Any] | None) -> dict[str, Any] | None:
    """{metric: {diff, ci, p, p_from, significant, seeds}} of `stage` minus the compare_to row, or None."""
    if base is None or stage.name == spec.compare_to:
        return None
    items = pooled_items(spec, stage)
    return None if items is None else paired_bootstrap(base, items, spec.bootstrap, seed=0)
