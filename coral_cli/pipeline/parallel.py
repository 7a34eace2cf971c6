"""Run a table's tasks `jobs` at a time, each in its own process with its share of the CPU
threads. On a small CPU this is faster than one process with every thread: the models are small
enough that two threads on one matmul gain little (the CPU table's BERT evaluator trained in 10.7
min on two threads alone and in 10.6 on one beside another task), while two processes keep both
cores busy."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from coral_cli.errors import CoralError
from coral_cli.pipeline.schedule import Key, Task, next_task

Launch = Callable[[Task], list[str]]  # the command line that runs one task
Notify = Callable[[str, str], None]  # (stage, message)


class TaskFailed(CoralError):
    """A task's process exited non-zero: its log's tail says why."""

    def __init__(self, message: str, hint: str, exit_code: int) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


@dataclass
class _Running:
    task: Task
    process: subprocess.Popen[bytes]
    log: Path
    stream: IO[bytes]
    started: float


def cpu_threads() -> int:
    """The threads this process may use: OMP_NUM_THREADS when set, else the CPUs it may run on."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_tasks(tasks: list[Task], jobs: int, launch: Launch, logs: Path, notify: Notify,
              poll_s: float = 0.5, report_s: float = 60.0) -> None:
    """Start ready tasks until `jobs` run, wait, repeat; every `report_s` seconds each running
    task's newest log line (its progress) is passed on. After a failure no new task starts; the
    running ones finish (each is resumable anyway), then `TaskFailed` names the first failure.
    Ctrl-C reaches the children too (same process group): they stop as they would alone."""
    threads = max(1, cpu_threads() // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    logs.mkdir(parents=True, exist_ok=True)
    done: set[Key] = set()
    started: set[Key] = set()
    running: list[_Running] = []
    failed: list[tuple[_Running, int]] = []
    reported = time.perf_counter()
    try:
        while True:
            while not failed and len(running) < jobs and (task := next_task(tasks, done, started)) is not None:
                log = logs / f"{task.stage}.{task.phase}.log"
                stream = log.open("ab")  # a rerun appends: the log of the run that did the work stays
                stream.write(f"== {task} started {time.strftime('%Y-%m-%d %H:%M:%S')} ==\n".encode())
                stream.flush()
                process = subprocess.Popen(launch(task), stdout=stream, stderr=subprocess.STDOUT, env=env)
                running.append(_Running(task, process, log, stream, time.perf_counter()))
                started.add(task.key)
                notify(task.stage, f"{task.phase}: started ({threads} thread{'s' * (threads > 1)}, log {log})")
            if not running:
                break
            time.sleep(poll_s)
            if time.perf_counter() - reported >= report_s:
                reported = time.perf_counter()
                for r in running:
                    if line := _last_line(r.log):
                        notify(r.task.stage, f"{r.task.phase}: {line}")
            for r in [r for r in running if r.process.poll() is not None]:
                running.remove(r)
                r.stream.close()
                minutes = (time.perf_counter() - r.started) / 60
                if r.process.returncode == 0:
                    done.add(r.task.key)
                    notify(r.task.stage, f"{r.task.phase}: finished in {minutes:.1f} min")
                else:
                    failed.append((r, r.process.returncode))
                    notify(r.task.stage, f"{r.task.phase}: failed after {minutes:.1f} min (exit {r.process.returncode})")
    except KeyboardInterrupt:
        for r in running:  # they got the same SIGINT: let them save and stop
            r.process.wait()
            r.stream.close()
        raise
    if failed:
        first, code = failed[0]
        raise TaskFailed(f"{first.task} failed (exit {code}); the end of {first.log}:\n{_tail(first.log)}",
                         "fix what the log says, then run the same command again: finished stages are kept",
                         2 if code == 2 else 1)
    left = [str(t) for t in tasks if t.key not in done]
    if left:  # cannot happen with needs inside the selection; a guard against a cycle
        raise TaskFailed(f"tasks never became ready: {', '.join(left)}", "check the table's stage references", 2)


def _lines(log: Path, tail_bytes: int = 16384) -> list[str]:
    """The non-empty lines at the end of a log (a progress bar's carriage returns end lines too)."""
    with log.open("rb") as f:
        f.seek(max(0, log.stat().st_size - tail_bytes))
        text = f.read().decode("utf-8", errors="replace").replace("\r", "\n")
    return [x.strip() for x in text.splitlines() if x.strip()]


def _last_line(log: Path) -> str:
    """The task's own newest line: not the "== started ==" header this module wrote."""
    lines = [x for x in _lines(log) if not (x.startswith("== ") and x.endswith(" =="))]
    return lines[-1] if lines else ""


def _tail(log: Path, lines: int = 12) -> str:
    return "\n".join("    " + line for line in _lines(log)[-lines:])
