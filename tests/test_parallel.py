"""`run_tasks`, the side-by-side scheduler of `coral recipe run --jobs`, on stand-in commands that
only record when they ran: what it guarantees does not depend on what the tasks compute."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coral_cli.pipeline.parallel import TaskFailed, run_tasks
from coral_cli.pipeline.schedule import Task


def recorder(folder: Path, seconds: float = 0.3, fail: dict[str, int] | None = None):
    """A launch function: each task writes its start and end time, prints a progress line, and
    exits with `fail[stage]` when given."""
    def launch(task: Task) -> list[str]:
        code = (fail or {}).get(task.stage, 0)
        script = (f"import pathlib, sys, time; d = pathlib.Path({str(folder)!r}); "
                  f"(d / '{task.stage}.start').write_text(repr(time.time())); "
                  f"print('{task.stage} step 1/2', flush=True); time.sleep({seconds}); "
                  f"print('{task.stage}: it broke' if {code} else '', flush=True); "
                  f"(d / '{task.stage}.end').write_text(repr(time.time())); sys.exit({code})")
        return [sys.executable, "-c", script]
    return launch


def times(folder: Path, stage: str) -> tuple[float, float]:
    return float((folder / f"{stage}.start").read_text()), float((folder / f"{stage}.end").read_text())


def test_tasks_start_after_their_needs_and_never_more_than_jobs_at_once(tmp_path):
    tasks = [Task("a", "train"), Task("b", "train", frozenset({("a", "train")})), Task("c", "train"),
             Task("d", "train", frozenset({("b", "train")})), Task("e", "train")]
    seen: list[tuple[str, str]] = []
    run_tasks(tasks, 2, recorder(tmp_path), tmp_path / "logs", lambda s, m: seen.append((s, m)),
              poll_s=0.02, report_s=0.1)
    span = {t.stage: times(tmp_path, t.stage) for t in tasks}
    assert span["b"][0] >= span["a"][1] and span["d"][0] >= span["b"][1]
    for t in span.values():  # at any start, at most one other task is running
        assert sum(s <= t[0] < e for s, e in span.values()) <= 2
    assert ("a", "train: a step 1/2") in seen  # each running task's newest log line is passed on
    assert not [m for _, m in seen if " started 20" in m and "==" in m]  # not the log's own header
    assert {s for s, m in seen if m.startswith("train: finished")} == {"a", "b", "c", "d", "e"}
    first = (tmp_path / "logs" / "d.train.log").read_text()
    assert first.startswith("== d (train) started ") and "d step 1/2" in first
    run_tasks(tasks[:1], 1, recorder(tmp_path), tmp_path / "logs", lambda s, m: None, poll_s=0.02)
    assert (tmp_path / "logs" / "a.train.log").read_text().count("a step 1/2") == 2  # a rerun keeps the first log


def test_after_a_failure_nothing_new_starts_and_the_error_carries_the_log(tmp_path):
    tasks = [Task("x", "train"), Task("y", "generate", frozenset({("x", "train")})), Task("z", "train")]
    with pytest.raises(TaskFailed) as failure:
        run_tasks(tasks, 1, recorder(tmp_path, 0.05, fail={"x": 2}), tmp_path / "logs", lambda s, m: None, poll_s=0.02)
    assert failure.value.exit_code == 2
    assert "x (train) failed (exit 2)" in failure.value.message and "x: it broke" in failure.value.message
    assert "x.train.log" in failure.value.message and "run the same command again" in str(failure.value)
    assert not (tmp_path / "y.start").exists() and not (tmp_path / "z.start").exists()
