"""What the trainer tells its listeners (progress bars, the TUI, tests); it never prints itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union


@dataclass(frozen=True)
class TrainStart:
    total_steps: int  # planned optimizer steps (max_epochs or max_steps)
    start_step: int  # > 0 when resuming
    steps_per_epoch: int


@dataclass(frozen=True)
class StepEnd:
    step: int
    epoch: int
    stats: dict[str, float]  # loss, lr, tokens_per_s, task stats (means over the logging window)


@dataclass(frozen=True)
class EvalEnd:
    step: int
    epoch: int
    metrics: dict[str, Any]  # numbers, plus e.g. 'samples' and 'collapse' (alarm sentences) of a generator
    improved: bool


@dataclass(frozen=True)
class Saved:
    step: int
    path: Path


@dataclass(frozen=True)
class TrainEnd:
    step: int
    reason: str  # 'max_epochs', 'max_steps', 'early_stopping', 'collapse' (train.stop_on_collapse)
    best: float | None
    best_path: Path | None = field(default=None)


Event = Union[TrainStart, StepEnd, EvalEnd, Saved, TrainEnd]
Listener = Callable[[Event], None]
