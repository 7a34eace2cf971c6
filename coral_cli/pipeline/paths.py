"""Where a table recipe's stages keep their runs, checkpoints, predictions and reports."""

from __future__ import annotations

from pathlib import Path

from coral_cli.pipeline.spec import StageSpec, TableSpec
from coral_cli.runs import RunDir

GROUND_TRUTH = "ground-truth"  # the pseudo-stage that scores the references themselves


def run_of(spec: TableSpec, stage: StageSpec) -> RunDir:
    return RunDir(spec.runs_dir / stage.name)


def checkpoint_of(spec: TableSpec, stage: StageSpec) -> Path:
    """The model a stage hands on: a given checkpoint, the model of the stage it names as
    `generator`, else best/ (last/ when no evaluation saved one)."""
    if stage.checkpoint is not None:
        return stage.checkpoint
    if stage.generator:
        return checkpoint_of(spec, spec.stage(stage.generator))
    run = run_of(spec, stage)
    best = run.checkpoint("best")
    return best if best.exists() or not run.checkpoint("last").exists() else run.checkpoint("last")


def predictions_path(spec: TableSpec, name: str) -> Path:
    return spec.runs_dir / name / f"{spec.split}-predictions.jsonl"


def report_path(spec: TableSpec, name: str) -> Path:
    return spec.runs_dir / name / f"{spec.split}-eval.json"
