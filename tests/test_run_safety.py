"""Run folders under interruption and misuse: one process per run (lock), --resume under the same
config only, recovery from a kill mid-swap, orphaned temp folders, metrics without repeated steps,
Ctrl-C that says how to resume, umask-respecting modes, damaged checkpoints."""

import os
import shlex
import shutil
import stat
import subprocess
import sys
import threading

import pytest

from coral_cli.atomic import atomic_directory, atomic_write_text, restore_interrupted
from coral_cli.config import resolve
from coral_cli.config.drift import config_drift
from coral_cli.run_summary import current_attempt, summarize_run
from coral_cli.runs import RunDir, RunInUse
from coral_cli.training.events import StepEnd
from tests.tiny_generator import write_recipe


def steps_logged(run: RunDir) -> list[int]:
    return [r["step"] for r in run.read_metrics() if r.get("event") == "step"]


def train_args(recipe: str, name: str, *extra: str) -> list[str]:
    return ["coral", "train", "--recipe", recipe, "--name", name, "--device", "cpu", *extra]


def hold_lock(run: RunDir) -> subprocess.Popen:
    """Another process that holds `run`'s lock until it is killed."""
    code = (f"import sys, pathlib; from coral_cli.runs import RunDir\n"
            f"with RunDir(pathlib.Path({str(run.root)!r})).lock():\n    print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny generator run to step 4 with last/ saved every 2 steps: (recipe, runs folder)."""
    from typer.testing import CliRunner

    from coral_cli.commands.app import app

    tmp = tmp_path_factory.mktemp("safety")
    recipe = write_recipe(tmp, f'\n[runtime]\nruns_dir = "{tmp / "runs"}"\nseed = 3\n')
    args = train_args(recipe, "base", "--max-steps", "4", "--set", "train.save_every=2", "--set", "train.log_every=1")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return recipe, tmp / "runs"


@pytest.fixture
def copy(base, tmp_path):
    """A private copy of the base run (with --recipe pointing at it): (recipe, RunDir)."""
    recipe, runs = base
    shutil.copytree(runs / "base", tmp_path / "runs" / "base")
    mine = write_recipe(tmp_path, f'\n[runtime]\nruns_dir = "{tmp_path / "runs"}"\nseed = 3\n')
    return mine, RunDir(tmp_path / "runs" / "base")


# 1. one process per run folder

def test_a_run_folder_locked_by_another_process_is_refused_before_anything_is_written(tmp_path, cli):
    recipe = write_recipe(tmp_path, f'\n[runtime]\nruns_dir = "{tmp_path / "runs"}"\n')
    run = RunDir(tmp_path / "runs" / "busy")
    holder = hold_lock(run)
    try:
        result = cli(*train_args(recipe, "busy", "--max-steps", "1"))
        assert result.exit_code == 2
        assert f"run folder {run.root} is in use by another coral process (pid {holder.pid})" in result.stderr
        assert "fix:" in result.stderr and not run.config_path.exists()
        with pytest.raises(RunInUse, match=f"pid {holder.pid}"):
            with run.lock():
                pass
    finally:
        holder.kill()
        holder.wait()
    with run.lock():  # the kernel dropped the dead holder's lock: nothing stale to clear
        with run.lock():  # nesting in one thread is free
            pass
        failed = []
        other = threading.Thread(target=lambda: failed.append(pytest.raises(RunInUse, run.lock().__enter__)))
        other.start()
        other.join()
        assert "in use by another training in this process" in str(failed[0].value)


def test_the_table_runner_takes_the_lock_before_touching_a_stage(tmp_path):
    from coral_cli.pipeline.runner import TableRunner
    from coral_cli.pipeline.spec import read_table
    from tests.test_pipeline import write_table

    spec = read_table(write_table(tmp_path / "t"))
    stage = spec.stage("ce")
    run = RunDir(spec.runs_dir / "ce")
    holder = hold_lock(run)
    try:
        with pytest.raises(RunInUse, match="in use by another coral process"):
            TableRunner(spec, lambda *a: None).train(stage)
        assert not run.config_path.exists()
    finally:
        holder.kill()
        holder.wait()


# 2. --resume continues under the saved config

def test_config_drift_follows_the_schema_metadata():
    saved = resolve(None, {"train.max_steps": 10})
    allowed = resolve(None, {"train.max_steps": 20, "runtime.device": "cpu", "runtime.runs_dir": "elsewhere",
                             "train.log_every": 1, "train.save_every": 5, "train.save_epochs": 2,
                             "retriever.train.max_epochs": 9, "generate.max_new_tokens": 3})
    assert config_drift(saved, allowed, "generator") == []
    assert config_drift(saved, allowed, "generator", extend=False) == ["train.max_steps: 10 -> 20"]
    lowered = resolve(None, {"train.max_steps": 5})
    assert config_drift(saved, lowered, "generator") == ["train.max_steps: 10 -> 5"]
    assert config_drift(saved, resolve(None, {"train.max_steps": 0}), "generator") == []  # 0 = no limit
    changed = resolve(None, {"train.max_steps": 10, "retriever.args": {"hidden": 8}, "data.min_context_turns": {"train": 2},
                             "train.lr": 0.5})
    assert config_drift(saved, changed, "generator") == [
        "data.min_context_turns: {'train': 1, 'validation': 1, 'test': 2} -> {'train': 2, 'validation': 1, 'test': 2}",
        "train.lr: 0.0001 -> 0.5"]
    assert [d.split(":")[0] for d in config_drift(saved, changed, "retriever")] == ["data.min_context_turns", "retriever.args"]


@pytest.mark.slow
def test_a_refused_resume_leaves_the_run_untouched_and_a_raised_limit_trains_further(copy, cli):
    recipe, run = copy
    before = run.config_path.read_bytes()
    args = ["coral", "train", "--name", "base", "--resume", "--set", f"runtime.runs_dir={run.root.parent}"]
    refused = cli(*args, "--set", "generator.d_model=32")
    assert refused.exit_code == 2
    assert "generator.d_model: 64 -> 32" in refused.stderr and "start a new run with --name" in refused.stderr
    recipe_change = cli(*args, "--recipe", recipe, "--lr", "0.5")
    assert recipe_change.exit_code == 2 and "train.lr: 0.003 -> 0.5" in recipe_change.stderr
    assert run.config_path.read_bytes() == before
    resumed = cli(*args, "--max-steps", "5", "--device", "cpu", "--set", "train.log_every=5")
    assert resumed.exit_code == 0, resumed.output
    assert steps_logged(run) == [1, 2, 3, 4, 5]
    assert resolve(run.config_path).train.max_steps == 5 and resolve(run.config_path).train.log_every == 5


# 3 + 4. a kill between the swap's renames; orphaned temp folders

def test_atomic_directory_restores_a_swap_killed_between_its_renames(tmp_path, monkeypatch):
    target = tmp_path / "last"
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("v1")
    real = os.replace

    def killed(src, dst):
        if str(dst) == str(target):  # the second rename: tmp -> last
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr("coral_cli.atomic.os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as tmp:
            (tmp / "weights").write_text("v2")
    monkeypatch.undo()
    assert not target.exists() and (tmp_path / ".last.old" / "weights").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:  # restores v1 first, then fails: v1 stays
            raise RuntimeError
    assert (target / "weights").read_text() == "v1" and sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert not restore_interrupted(target)


@pytest.mark.slow
def test_resume_restores_last_from_the_old_copy_and_removes_orphaned_temps(copy, cli):
    recipe, run = copy
    last = run.checkpoint("last")
    os.rename(last, run.checkpoints / ".last.old")  # killed between the two renames of a save
    for orphan in (".last.k1ll3d.tmp", ".best.k1ll3d.tmp"):
        (run.checkpoints / orphan).mkdir()
        (run.checkpoints / orphan / "model.safetensors").write_bytes(b"\0" * 1024)
    (run.root / ".metrics.jsonl.k1ll3d.tmp").write_text("partial")
    result = cli(*train_args(recipe, "base", "--resume", "--max-steps", "5", "--set", "train.log_every=1"))
    assert result.exit_code == 0, result.output
    assert steps_logged(run) == [1, 2, 3, 4, 5]  # continued from step 4, not from 0
    assert [r["step"] for r in run.read_metrics() if r["event"] == "resume"] == [4]
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["best", "last"]
    assert sorted(p.name for p in run.root.iterdir()) == [".lock", "checkpoints", "config.toml", "metrics.jsonl"]


@pytest.mark.slow
def test_resume_without_a_checkpoint_is_an_error_when_steps_were_logged(copy, cli):
    recipe, run = copy
    shutil.rmtree(run.checkpoint("last"))
    result = cli(*train_args(recipe, "base", "--resume", "--max-steps", "5"))
    assert result.exit_code == 2
    assert "logged training up to step 4 but has no checkpoint" in result.stderr and "fix:" in result.stderr


# 5 + 6. Ctrl-C says how to resume; each step is logged once

@pytest.mark.slow
def test_ctrl_c_prints_the_resume_command_and_the_resumed_run_logs_each_step_once(tmp_path, cli, monkeypatch):
    from coral_cli.commands.progress import TrainingView

    recipe = write_recipe(tmp_path, f'\n[runtime]\nruns_dir = "{tmp_path / "runs"}"\nseed = 3\n')
    run = RunDir(tmp_path / "runs" / "base")
    view = TrainingView.__call__

    def ctrl_c_at_2(self, event):
        view(self, event)
        if isinstance(event, StepEnd) and event.step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainingView, "__call__", ctrl_c_at_2)
    killed = cli(*train_args(recipe, "base", "--max-steps", "3", "--set", "train.save_every=1",
                             "--set", "train.log_every=1"))
    assert killed.exit_code == 130
    assert f"last checkpoint {run.checkpoint('last')} (step 1)" in killed.stderr
    again = killed.stderr.split("resume with: ")[1].splitlines()[0]
    assert again == f"coral coral train --name base --resume --set runtime.runs_dir={run.root.parent}"
    assert steps_logged(run) == [1, 2]
    monkeypatch.undo()
    resumed = cli(*shlex.split(again)[1:])
    assert resumed.exit_code == 0, resumed.output
    assert steps_logged(run) == [1, 2, 3]  # step 2 redone from the step-1 checkpoint, logged once
    assert [r["event"] for r in run.read_metrics()].count("resume") == 1
    summary = summarize_run(run)
    assert [s for s, _ in summary["series"]["train/loss"]] == [1, 2, 3] and summary["ended"] == "max_steps"


def test_ctrl_c_in_a_table_stage_names_the_table_command(tmp_path, capsys):
    import typer

    from coral_cli.commands.recipe import _train_view
    from coral_cli.pipeline.spec import read_table
    from tests.test_pipeline import write_table

    spec = read_table(write_table(tmp_path / "t"))
    with pytest.raises(typer.Exit) as stop:
        with _train_view(spec, "coral recipe run t.toml", spec.stage("ce"), resolve()):
            raise KeyboardInterrupt
    assert stop.value.exit_code == 130
    err = capsys.readouterr().err
    assert "no checkpoint of" in err and "'coral recipe run t.toml' trains it again from the start" in err


def test_metrics_from_before_the_fix_are_summarised_one_record_per_step():
    records = [{"event": "step", "step": s} for s in (1, 2, 3)] + [{"event": "eval", "step": 3}] + \
        [{"event": "step", "step": s} for s in (3, 4)] + [{"event": "end", "step": 4}]
    assert [(r["event"], r["step"]) for r in current_attempt(records)] == \
        [("step", 1), ("step", 2), ("step", 3), ("step", 4), ("end", 4)]


# 7. modes follow the umask

@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "config.toml", "x = 1\n")
        with atomic_directory(tmp_path / "last") as tmp:
            (tmp / "w").write_text("v")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "last").stat().st_mode) == dir_mode


# 12. a damaged checkpoint is one clear error

@pytest.mark.slow
def test_a_truncated_checkpoint_on_resume_is_an_asset_error(copy, cli):
    import torch

    from coral_cli.errors import AssetError
    from coral_cli.training.state import OPTIM_FILE, load_state

    recipe, run = copy
    last = run.checkpoint("last")
    optimizer = last / OPTIM_FILE
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    with pytest.raises(AssetError, match="cannot resume from"):
        load_state(last, torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]))
    model = last / "model.safetensors"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    result = cli(*train_args(recipe, "base", "--resume", "--max-steps", "5"))
    assert result.exit_code == 2, result.output
    assert f"cannot resume from {last}" in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.output


# 13. a run or stage name is one plain folder inside runs/; a refused run leaves no folder

BAD_NAMES = ["..", "../x", "ABS", ".", "a/b", ".hidden", "-x"]


def _name(name: str, tmp_path) -> str:
    return str(tmp_path / "abs") if name == "ABS" else name  # an absolute path, inside the test's folder


@pytest.mark.parametrize("command", [["coral", "train"], ["retriever", "train"]])
def test_a_run_name_that_is_not_one_plain_folder_is_refused_before_anything_is_written(tmp_path, cli, monkeypatch, command):
    work = tmp_path / "work" / "inner"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # runs/ is work/runs: '..' would be work/, '../x' work/x
    for name in BAD_NAMES:
        name = _name(name, tmp_path)
        result = cli(*command, f"--name={name}", "--max-steps", "1", "--max-pairs", "8", "--device", "cpu")
        assert result.exit_code == 2, (name, result.output)
        assert f"--name {name!r} is not a usable run folder name" in result.stderr and "fix:" in result.stderr
        assert "Traceback" not in result.output
    assert list(work.iterdir()) == [] and list(tmp_path.iterdir()) == [tmp_path / "work"]
    assert list((tmp_path / "work").iterdir()) == [work]


def test_table_stage_names_follow_the_same_rule(tmp_path):
    from coral_cli.errors import ConfigError
    from coral_cli.pipeline.spec import read_table
    from tests.test_pipeline import TABLE, write_table

    for name in [*BAD_NAMES, ""]:
        name = _name(name, tmp_path)
        table = write_table(tmp_path / "t", TABLE.replace('name = "ce"', f'name = "{name}"'))
        with pytest.raises(ConfigError, match="is not a usable run folder name"):
            read_table(table)
    read_table(write_table(tmp_path / "ok"))  # the usual names pass


def test_a_refused_init_leaves_no_run_folder(tmp_path, cli):
    runs = tmp_path / "runs"
    for init in (tmp_path / "missing", tmp_path / "not-a-checkpoint"):
        result = cli("coral", "train", "--loss", "ce", "--init", str(init), "--name", "x", "--max-steps", "1",
                     "--set", f"runtime.runs_dir={runs}")
        assert result.exit_code == 2 and "not a checkpoint folder" in result.stderr, result.output
        assert not (runs / "x").exists()
        (tmp_path / "not-a-checkpoint").mkdir(exist_ok=True)
    kept = RunDir(runs / "kept")
    kept.root.mkdir(parents=True)
    (kept.root / "notes.txt").write_text("mine")
    result = cli("coral", "train", "--loss", "ce", "--init", str(tmp_path / "missing"), "--name", "kept",
                 "--max-steps", "1", "--set", f"runtime.runs_dir={runs}")
    assert result.exit_code == 2 and (kept.root / "notes.txt").read_text() == "mine"  # not the lock's folder: kept


def test_a_lock_removes_only_a_folder_it_created_and_nothing_was_written_to(tmp_path):
    from coral_cli.errors import DataError

    run = RunDir(tmp_path / "runs" / "r")
    with pytest.raises(DataError):
        with run.lock():
            run.create(resolve(None, {}), "coral coral train")
            raise DataError("no such dataset", "fix it")
    assert not run.root.exists() and (tmp_path / "runs").is_dir()
    with pytest.raises(DataError):
        with run.lock():
            run.log({"event": "step", "step": 1})
            raise DataError("diverged", "fix it")
    assert run.metrics_path.exists()  # it logged: kept
    with pytest.raises(RuntimeError):  # a bug is not a refusal: the folder stays for the traceback's reader
        with RunDir(tmp_path / "runs" / "bug").lock():
            raise RuntimeError("bug")
    assert (tmp_path / "runs" / "bug").is_dir()


# 14. the damaged optimizer names its file

def test_a_damaged_optimizer_file_is_named(tmp_path):
    import torch

    from coral_cli.errors import AssetError
    from coral_cli.training.state import OPTIM_FILE, STATE_FILE, LoopState, load_state, save_state

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    save_state(tmp_path, opt, LoopState(step=3))
    (tmp_path / OPTIM_FILE).write_bytes((tmp_path / OPTIM_FILE).read_bytes()[:50])
    with pytest.raises(AssetError, match=f"cannot resume from {tmp_path}: {tmp_path / OPTIM_FILE} is missing or damaged"):
        load_state(tmp_path, opt)
    save_state(tmp_path, opt, LoopState(step=3))
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(AssetError, match=f"{tmp_path / STATE_FILE} is missing or damaged"):
        load_state(tmp_path, opt)
