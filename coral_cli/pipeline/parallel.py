"""Run a table's tasks `jobs` at a time, each in its own process with its share of the CPU
threads. On a small CPU this is faster than one process with every thread: the models are small
enough that two threads on one matmul gain little (the CPU table's BERT evaluator trained in 10.7
min on two threads alone and in 10.6 on one beside another task), while two processes keep both
cores busy."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from coral_cli.errors import CoralError
from coral_cli.pipeline.schedule import Key, Task, next_task

Launch = Callable[[Task], list[str]]  # the command line that runs one task
Notify = Callable[[str, str], None]  # (stage, message)
INTEROP_ENV = "CORAL_INTEROP_THREADS"  # a child sizes torch's inter-op pool by it (`apply_thread_caps`)


class TaskFailed(CoralError):
    """A task's process exited non-zero: its log's tail says why."""

    def __init__(self, message: str, hint: str, exit_code: int) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


class TasksInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a side-by-side run; `stopped` names the tasks that were running."""

    def __init__(self, stopped: list[str]) -> None:
        super().__init__(", ".join(stopped))
        self.stopped = stopped


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


def child_env(threads: int) -> dict[str, str]:
    """The environment of a task's process: every thread pool capped to its share, so `jobs`
    processes do not oversubscribe the cores (OpenMP/MKL for torch's intra-op work, Rayon for the
    tokenizers, which also stay sequential, and torch's inter-op pool via `INTEROP_ENV`)."""
    n = str(threads)
    return {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "RAYON_NUM_THREADS": n,
            "TOKENIZERS_PARALLELISM": "false", INTEROP_ENV: "1"}


def apply_thread_caps() -> None:
    """In a task's process, first thing: torch reads OMP_NUM_THREADS itself but sizes its inter-op
    pool by the core count, and only `set_num_interop_threads` (before any parallel work) caps it."""
    value = os.environ.get(INTEROP_ENV)
    if not value:
        return
    import torch

    with contextlib.suppress(RuntimeError, ValueError):  # too late (parallel work ran) or not a number
        torch.set_num_interop_threads(max(1, int(value)))


def run_tasks(tasks: list[Task], jobs: int, launch: Launch, logs: Path, notify: Notify,
              poll_s: float = 0.5, report_s: float = 60.0, grace_s: float = 10.0) -> None:
    """Start ready tasks until `jobs` run, wait, repeat; every `report_s` seconds each running
    task's newest log line (its progress) is passed on. After a failure no new task starts; the
    running ones finish (each is resumable anyway), then `TaskFailed` names the first failure.

    Each task runs in a session of its own, so a terminal's Ctrl-C reaches this process alone and
    each child gets exactly one SIGINT, passed on here (a second one could cut its clean stop
    short); this process waits for them to stop, then raises `TasksInterrupted`. On any other
    exception (SIGTERM and SIGHUP become one) the children are terminated, and killed when they
    outlive `grace_s`: none keeps running, unseen, after this returns."""
    threads = max(1, cpu_threads() // jobs)
    env = child_env(threads)
    logs.mkdir(parents=True, exist_ok=True)
    done: set[Key] = set()
    started: set[Key] = set()
    running: list[_Running] = []
    failed: list[tuple[_Running, int]] = []
    reported = time.perf_counter()
    try:
        with _stop_signals_raise():
            while True:
                while not failed and len(running) < jobs and (task := next_task(tasks, done, started)) is not None:
                    running.append(_start(task, launch(task), logs, env))
                    started.add(task.key)
                    notify(task.stage, f"{task.phase}: started ({threads} thread{'s' * (threads > 1)}, "
                                       f"log {running[-1].log})")
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
                        notify(r.task.stage, f"{r.task.phase}: failed after {minutes:.1f} min "
                                             f"(exit {r.process.returncode})")
    except KeyboardInterrupt:
        stopped = [str(r.task) for r in running]
        _interrupt(running, notify)  # a second Ctrl-C while waiting ends here too: the finally kills
        raise TasksInterrupted(stopped) from None
    finally:
        _terminate(running, grace_s)
    if failed:
        first, code = failed[0]
        raise TaskFailed(f"{first.task} failed (exit {code}); the end of {first.log}:\n{_tail(first.log)}",
                         "fix what the log says, then run the same command again: finished stages are kept",
                         2 if code == 2 else 1)
    left = [str(t) for t in tasks if t.key not in done]
    if left:  # cannot happen with needs inside the selection; a guard against a cycle
        raise TaskFailed(f"tasks never became ready: {', '.join(left)}", "check the table's stage references", 2)


def _start(task: Task, command: list[str], logs: Path, env: dict[str, str]) -> _Running:
    """Start one task's process, its output appended to its log; the log is closed if it cannot start."""
    log = logs / f"{task.stage}.{task.phase}.log"
    stream = log.open("ab")  # a rerun appends: the log of the run that did the work stays
    try:
        stream.write(f"== {task} started {time.strftime('%Y-%m-%d %H:%M:%S')} ==\n".encode())
        stream.flush()
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    except BaseException:
        stream.close()
        raise
    return _Running(task, process, log, stream, time.perf_counter())


def _interrupt(running: list[_Running], notify: Notify) -> None:
    """Pass Ctrl-C on to each running task and wait until it has stopped (saved what it saves)."""
    for r in running:
        with contextlib.suppress(ProcessLookupError):
            r.process.send_signal(signal.SIGINT)
        notify(r.task.stage, f"{r.task.phase}: interrupted, waiting for it to stop (Ctrl-C again stops it at once)")
    for r in list(running):
        r.process.wait()
        running.remove(r)
        r.stream.close()


def _terminate(running: list[_Running], grace_s: float) -> None:
    """SIGTERM every task still running, SIGKILL those alive after `grace_s`; close their logs."""
    for r in running:
        if r.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                r.process.terminate()
    deadline = time.monotonic() + grace_s
    for r in running:
        try:
            r.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            r.process.kill()
            r.process.wait()
        r.stream.close()
    running.clear()


@contextlib.contextmanager
def _stop_signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed terminal) raise SystemExit here, so the children, in sessions of
    their own and out of the terminal's reach, are stopped too; only the main thread can do this."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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
