"""`run_tasks`, the side-by-side scheduler of `coral recipe run --jobs`, on stand-in commands that
only record when they ran: what it guarantees does not depend on what the tasks compute."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


PARENT = """
import pathlib, signal, sys
# a foreground process's Ctrl-C handling, even when pytest itself runs as a background job (which
# starts its children with SIGINT ignored, as a shell does for `cmd &`)
signal.signal(signal.SIGINT, signal.default_int_handler)
from coral_cli.pipeline.parallel import TasksInterrupted, run_tasks
from coral_cli.pipeline.schedule import Task
d = pathlib.Path(sys.argv[1])
child = ("import pathlib, sys, time; d = pathlib.Path(sys.argv[1])\\n"
         "(d / (sys.argv[2] + '.start')).write_text('')\\n"
         "try:\\n    time.sleep(60)\\n"
         "except KeyboardInterrupt:\\n    (d / (sys.argv[2] + '.saved')).write_text('')\\n    sys.exit(130)\\n")
try:
    run_tasks([Task("a", "train"), Task("b", "train")], 2, lambda t: [sys.executable, "-c", child, str(d), t.stage],
              d / "logs", lambda s, m: print(s, m, flush=True), poll_s=0.02)
except TasksInterrupted as exc:
    print("stopped:", exc.stopped, flush=True)
    sys.exit(130)
"""


def _wait_for(predicate, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_a_sigint_to_the_parent_alone_reaches_each_child_which_stops_cleanly(tmp_path):
    """`kill -INT <parent>` (not the terminal's group-wide Ctrl-C): each child still gets one SIGINT,
    stops as it would alone (here: writes its `.saved` marker), and the parent waits for it."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    try:
        _wait_for(lambda: (tmp_path / "a.start").exists() and (tmp_path / "b.start").exists())
        parent.send_signal(signal.SIGINT)
        output, _ = parent.communicate(timeout=20)
    finally:
        parent.kill()
    assert parent.returncode == 130, output
    assert (tmp_path / "a.saved").exists() and (tmp_path / "b.saved").exists()  # both stopped via KeyboardInterrupt
    assert "stopped: ['a (train)', 'b (train)']" in output
    assert "a train: interrupted, waiting for it to stop" in output


def test_ctrl_c_prints_what_stopped_that_finished_stages_stay_and_how_to_resume(tmp_path, cli, monkeypatch):
    from coral_cli.pipeline.parallel import TasksInterrupted
    from coral_cli.pipeline.runner import TableRunner
    from tests.test_pipeline import write_table

    def interrupted(self, jobs, launch, only=()):
        raise TasksInterrupted(["ce (train)", "reward (train)"])

    monkeypatch.setattr(TableRunner, "run_side_by_side", interrupted)
    path = write_table(tmp_path / "t")
    result = cli("recipe", "run", str(path), "--jobs", "2", "--only", "ce", "--only", "reward")
    assert result.exit_code == 130
    assert ("interrupted: tiny table (stopped ce (train), reward (train)); finished stages are kept; resume with: "
            f"coral recipe run {path} --only ce --only reward --jobs 2") in result.stderr


def test_a_task_that_cannot_start_leaves_no_open_log_and_stops_the_running_ones(tmp_path, monkeypatch):
    """Popen failing for the second task: the first task's process is terminated, not left running,
    and every log stream opened is closed."""
    import coral_cli.pipeline.parallel as parallel

    opened: list = []
    real_open, real_popen = Path.open, subprocess.Popen
    started: list = []

    def tracking_open(self, *args, **kwargs):
        stream = real_open(self, *args, **kwargs)
        opened.append(stream)
        return stream

    def popen(command, **kwargs):
        if started:
            raise OSError("no such program")
        started.append(real_popen(command, **kwargs))
        return started[-1]

    monkeypatch.setattr(Path, "open", tracking_open)
    monkeypatch.setattr(parallel.subprocess, "Popen", popen)
    with pytest.raises(OSError, match="no such program"):
        run_tasks([Task("a", "train"), Task("b", "train")], 2, recorder(tmp_path, seconds=30), tmp_path / "logs",
                  lambda s, m: None, poll_s=0.02)
    assert started[0].poll() is not None  # terminated, not left running
    assert opened and all(s.closed for s in opened)


def test_an_error_in_the_scheduler_loop_stops_the_running_children(tmp_path, monkeypatch):
    """Any exception but Ctrl-C (here: a bug in the progress callback) terminates the children."""
    import coral_cli.pipeline.parallel as parallel

    children: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def spy(command, **kwargs):
        children.append(real_popen(command, **kwargs))
        return children[-1]

    def notify(stage: str, message: str) -> None:
        if "step 1/2" in message:  # the child is running
            raise RuntimeError("a bug in the front end")

    monkeypatch.setattr(parallel.subprocess, "Popen", spy)
    with pytest.raises(RuntimeError, match="a bug in the front end"):
        run_tasks([Task("a", "train")], 1, recorder(tmp_path, seconds=30), tmp_path / "logs", notify,
                  poll_s=0.02, report_s=0.0)
    assert len(children) == 1 and children[0].poll() is not None  # stopped, not running on unseen
    assert not (tmp_path / "a.end").exists()


def test_children_get_every_thread_pool_capped(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    script = ("import json, os, sys; json.dump({k: os.environ.get(k) for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', "
              "'RAYON_NUM_THREADS', 'TOKENIZERS_PARALLELISM', 'CORAL_INTEROP_THREADS')}, open(sys.argv[1], 'w'))")
    run_tasks([Task("a", "train")], 2, lambda t: [sys.executable, "-c", script, str(tmp_path / "env.json")],
              tmp_path / "logs", lambda s, m: None, poll_s=0.02)
    assert json.loads((tmp_path / "env.json").read_text()) == {
        "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "RAYON_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false",
        "CORAL_INTEROP_THREADS": "1"}


def test_a_task_process_caps_torchs_inter_op_pool_before_any_work(tmp_path, cli, monkeypatch):
    code = ("from coral_cli.pipeline.parallel import apply_thread_caps; apply_thread_caps(); "
            "import torch; print(torch.get_num_interop_threads())")
    env = {**os.environ, "CORAL_INTEROP_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == "1"
    # `--phase` (what a side-by-side task runs) applies the caps first thing
    import coral_cli.pipeline.parallel as parallel
    from tests.test_pipeline import write_table

    calls: list[bool] = []
    monkeypatch.setattr(parallel, "apply_thread_caps", lambda: calls.append(True))
    result = cli("recipe", "run", str(write_table(tmp_path / "t")), "--only", "ce", "--phase", "nope")
    assert result.exit_code == 2 and "unknown phase 'nope'" in result.stderr and calls == [True]
