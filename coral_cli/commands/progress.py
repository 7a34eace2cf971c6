"""A Rich view of trainer events: a progress bar with loss, tokens/s and ETA, one line per eval;
when stderr is not a terminal (CI, pipes, files), one plain line per log interval instead of a
bar that would be cut; and what Ctrl-C during training prints (`interrupt_hint`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from coral_cli.commands.console import err


class TrainingView:
    """Subscribe with `Trainer(listeners=[view])`; use as a context manager around `fit`."""

    def __init__(self, title: str, keys: tuple[str, ...] = ("loss",)) -> None:
        self.keys, self.title = keys, title
        self.plain = not err.is_terminal  # logs: plain lines, no live bar
        self.total, self.start_step, self.t0 = 0, 0, time.perf_counter()
        self.progress = Progress(
            TextColumn(f"[bold]{title}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False,
            disable=os.environ.get("RANK", "0") != "0" or self.plain,  # under torchrun only rank 0 shows progress
        )
        self.task_id: Any = None

    def __enter__(self) -> TrainingView:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def __call__(self, event: Any) -> None:
        from coral_cli.training.events import EvalEnd, Saved, StepEnd, TrainEnd, TrainStart

        if isinstance(event, TrainStart):
            self.total, self.start_step, self.t0 = event.total_steps, event.start_step, time.perf_counter()
            self.task_id = self.progress.add_task("train", total=event.total_steps, completed=event.start_step, stats="")
        elif isinstance(event, StepEnd):
            parts = [f"{k} {event.stats[k]:.4g}" for k in self.keys if k in event.stats]
            parts.append(f"{event.stats.get('tokens_per_s', 0):,.0f} tok/s")
            self.progress.update(self.task_id, completed=event.step, stats=" · ".join(parts))
            if self.plain and os.environ.get("RANK", "0") == "0":
                err.print(f"{self.title} step {event.step}/{self.total}: {' · '.join(parts)} · {self._clock(event.step)}",
                          markup=False, highlight=False, soft_wrap=True)
        elif isinstance(event, EvalEnd):
            shown = ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items() if isinstance(v, float))
            mark = "[green]best[/]" if event.improved else "[dim]no gain[/]"
            self.progress.console.print(f"eval @ step {event.step} (epoch {event.epoch}): {shown} {mark}")
            for sample in event.metrics.get("samples", []):  # watch the policy change
                self.progress.console.print(f"  [dim]…{sample['context'][-70:]}[/] → {sample['response']}",
                                            markup=True, highlight=False)
            for warning in event.metrics.get("collapse", []):
                self.progress.console.print(f"[yellow]warning:[/] validation replies @ step {event.step}: "
                                            f"{escape(warning)}", soft_wrap=True)
        elif isinstance(event, Saved):
            self.progress.update(self.task_id, completed=event.step)
        elif isinstance(event, TrainEnd):
            self.progress.update(self.task_id, completed=event.step)
            self.progress.console.print(f"done: {event.reason} at step {event.step}; best {event.best} -> {event.best_path}")
            if event.reason == "collapse":
                self.progress.console.print(
                    "stopped: the validation replies collapsed and train.stop_on_collapse is true (last/ and best/ "
                    "are saved); to train on anyway, run the same command with --resume --set train.stop_on_collapse=false",
                    markup=False, soft_wrap=True)

    def _clock(self, step: int) -> str:
        """Elapsed time and ETA from the steps done in this process."""
        return _elapsed_eta(self.t0, step - self.start_step, max(self.total - step, 0))


@contextmanager
def count_progress(title: str, total: int) -> Iterator[Callable[[int], None]]:
    """Progress of `total` items (responses generated, pairs scored): yields `advance(n)`. A bar with
    ETA in a terminal; otherwise a plain line at each tenth done, so logs stay readable."""
    if err.is_terminal:
        with Progress(TextColumn(f"[bold]{escape(title)}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=err, transient=True) as bar:
            task = bar.add_task(title, total=total)
            yield lambda n: bar.advance(task, n)
        return
    t0, done, shown = time.perf_counter(), 0, 0

    def advance(n: int) -> None:
        nonlocal done, shown
        done += n
        if done * 10 // max(total, 1) > shown or done >= total:
            shown = done * 10 // max(total, 1)
            err.print(f"{title}: {done}/{total} · {_elapsed_eta(t0, done, max(total - done, 0))}", markup=False,
                      highlight=False, soft_wrap=True)

    yield advance


def _elapsed_eta(t0: float, done: int, left: int) -> str:
    """Elapsed time since `t0` and the ETA of `left` more items at the pace of the `done` so far."""
    elapsed = time.perf_counter() - t0
    return f"elapsed {_hms(elapsed)} · ETA {_hms(elapsed / max(done, 1) * left)}"


def _hms(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


@contextmanager
def interrupt_hint(run: Any, resume: str, fresh: str) -> Iterator[None]:
    """Around a training: Ctrl-C prints the last checkpoint's step and `resume` (the exact command
    that continues), or `fresh` when no checkpoint was saved yet; then exits 130."""
    try:
        yield
    except KeyboardInterrupt:
        import typer

        from coral_cli.training.state import saved_step

        last = run.checkpoint("last")
        step = saved_step(last)
        if step is None:
            err.print(f"interrupted: no checkpoint of {run.root} was saved yet; {fresh}", highlight=False, markup=False,
                      soft_wrap=True)
        else:
            err.print(f"interrupted: last checkpoint {last} (step {step})\nresume with: {resume}", highlight=False,
                      markup=False, soft_wrap=True)
        raise typer.Exit(130) from None
