"""Writes that must not destroy data: --out follows a symlink and refuses a device, FIFO or socket
(never replacing the node with a regular file); a full disk is exit 2 naming the file for every
writer, checkpoints included, with nothing half-written; an evaluate report never sits beside
another report's per-context scores."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from coral_cli.atomic import atomic_directory, atomic_write_text, os_error_of
from coral_cli.errors import OutputError

ENOSPC_SAFETENSORS = "Error while serializing: I/O error: No space left on device (os error 28)"


def clean_error(result, *needles: str) -> str:
    output = result.output
    assert result.exit_code == 2, output
    assert "fix:" in output and "Traceback" not in output, output
    for needle in needles:
        assert needle in output, output
    return output


# --out: symlinks are followed, special files refused

def test_a_symlink_is_followed_and_the_target_is_written_in_its_own_folder(tmp_path):
    real = tmp_path / "real" / "out.jsonl"
    real.parent.mkdir()
    real.write_text("old\n")
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "out.jsonl"
    link.symlink_to(real)
    atomic_write_text(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new\n"
    assert sorted(p.name for p in (tmp_path / "links").iterdir()) == ["out.jsonl"]  # no temp beside the link
    dangling = tmp_path / "links" / "dangling"
    dangling.symlink_to(tmp_path / "real" / "created.txt")
    atomic_write_text(dangling, "made\n")
    assert dangling.is_symlink() and (tmp_path / "real" / "created.txt").read_text() == "made\n"


def test_a_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it for writing would block: the refusal must come from stat alone
    with pytest.raises(OutputError, match="it is a FIFO, not a regular file"):
        atomic_write_text(fifo, "x")
    link = tmp_path / "to-pipe"
    link.symlink_to(fifo)
    with pytest.raises(OutputError, match="a FIFO"):
        atomic_write_text(link, "x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe", "to-pipe"]


def test_dev_null_is_refused_and_stays_a_character_device():
    with pytest.raises(OutputError, match="a character device"):
        atomic_write_text("/dev/null", "x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.fixture
def predictions(tmp_path) -> str:
    path = tmp_path / "p.txt"
    path.write_text("hello there\n")
    return str(path)


def test_out_that_is_a_fifo_or_device_is_refused_before_any_work(cli, tmp_path, predictions):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for out in (str(fifo), "/dev/null", "/dev/full"):
        if not os.path.exists(out):
            continue
        kind = "a FIFO" if out == str(fifo) else "a character device"
        # the checkpoint does not exist: the --out check comes first
        clean_error(cli("generate", "-c", str(tmp_path / "nope"), "--out", out), f"--out {out} is {kind}")
        clean_error(cli("evaluate", "-p", predictions, "--metrics", "avg_len", "--out", out), f"--out {out} is {kind}")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not os.path.exists("/dev/null.items.json") and not os.path.exists("/dev/null.config.json")


def test_evaluate_out_through_a_symlink_writes_the_target(cli, tmp_path, predictions):
    real = tmp_path / "reports" / "r.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "r.json"
    link.symlink_to(real)
    result = cli("evaluate", "-p", predictions, "--metrics", "avg_len", "--out", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and json.loads(real.read_text())["metrics"]
    assert (tmp_path / "r.items.json").is_file()  # beside the name given, where compare looks


# a full disk names the file, for every writer

def test_os_errors_wrapped_by_rust_libraries_are_recognised():
    err = os_error_of(SafetensorError(ENOSPC_SAFETENSORS), "x/optimizer.safetensors")
    assert err.errno == errno.ENOSPC and err.strerror == "No space left on device"
    assert err.filename == "x/optimizer.safetensors"
    assert os_error_of(ValueError("no errno here")) is None
    assert os_error_of(OSError(errno.EROFS, "Read-only file system", "a")).filename == "a"


def test_a_full_disk_in_atomic_write_text_names_the_target(tmp_path, monkeypatch):
    target = tmp_path / "r.items.json"
    target.write_text("old")

    def full(fd, *args):
        raise OSError(errno.ENOSPC, "No space left on device")  # os.fsync names no file

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        atomic_write_text(target, "new")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.items.json"]


@pytest.mark.parametrize("error", [
    SafetensorError(ENOSPC_SAFETENSORS),
    OSError(errno.ENOSPC, "No space left on device"),
])
def test_a_full_disk_inside_a_checkpoint_save_names_it_and_keeps_the_old_one(tmp_path, error):
    last = tmp_path / "last"
    with atomic_directory(last) as tmp:
        (tmp / "model.safetensors").write_text("v1")
    with pytest.raises(OSError) as info:
        with atomic_directory(last) as tmp:
            (tmp / "model.safetensors").write_text("v2-part")
            raise error
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(last)
    assert (last / "model.safetensors").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["last"]


def test_a_full_disk_while_saving_the_optimizer_names_its_file(tmp_path, monkeypatch):
    from coral_cli.training import state
    from coral_cli.training.state import OPTIM_FILE, STATE_FILE, LoopState, save_state

    param = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.AdamW([param])
    param.grad = torch.ones(2)
    opt.step()
    last = tmp_path / "last"
    with atomic_directory(last) as tmp:
        save_state(tmp, opt, LoopState(step=1))
    before = {p.name: p.read_bytes() for p in last.iterdir()}

    def full(tensors, path, metadata=None):
        raise SafetensorError(ENOSPC_SAFETENSORS)

    monkeypatch.setattr(state, "save_file", full)
    with pytest.raises(OSError) as info:
        with atomic_directory(last) as tmp:
            save_state(tmp, opt, LoopState(step=2))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(last / OPTIM_FILE)
    assert {p.name: p.read_bytes() for p in last.iterdir()} == before
    monkeypatch.undo()

    def full_json(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_json)
    with pytest.raises(OSError) as info:
        with atomic_directory(last) as tmp:
            save_state(tmp, opt, LoopState(step=2))
    assert info.value.filename == str(last / STATE_FILE)
    assert {p.name: p.read_bytes() for p in last.iterdir()} == before


@pytest.mark.slow
def test_a_full_disk_during_training_is_exit_2_and_last_is_unchanged(tmp_path, cli, monkeypatch):
    from coral_cli.runs import RunDir
    from coral_cli.training import state
    from tests.tiny_generator import write_recipe

    recipe = write_recipe(tmp_path, f'\n[runtime]\nruns_dir = "{tmp_path / "runs"}"\nseed = 3\n')
    args = ["coral", "train", "--recipe", recipe, "--name", "full", "--device", "cpu", "--set", "train.save_every=1",
            "--set", "data.max_pairs=8"]
    assert cli(*args, "--max-steps", "1").exit_code == 0
    last = RunDir(tmp_path / "runs" / "full").checkpoint("last")
    before = {p.name: p.read_bytes() for p in last.iterdir()}

    def full(tensors, path, metadata=None):
        raise SafetensorError(ENOSPC_SAFETENSORS)

    monkeypatch.setattr(state, "save_file", full)
    result = cli(*args, "--max-steps", "2", "--resume")
    clean_error(result, f"cannot write {last / state.OPTIM_FILE}: No space left on device", "free some disk space")
    assert {p.name: p.read_bytes() for p in last.iterdir()} == before
    assert not [p for p in last.parent.iterdir() if p.name.startswith(".")]


# evaluate --out: the report and its .items.json together or not at all

def test_evaluate_out_on_a_full_disk_names_the_items_file(cli, tmp_path, predictions, monkeypatch):
    import coral_cli.atomic as atomic

    out = tmp_path / "r.json"
    real_replace = os.replace

    def full(src, dst):
        if str(dst).endswith(".items.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", full)
    clean_error(cli("evaluate", "-p", predictions, "--metrics", "avg_len", "--out", str(out)),
                f"cannot write {tmp_path / 'r.items.json'}: No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.txt"]  # no report, no items, no temp


def test_a_failed_report_leaves_no_items_file_of_its_own(cli, tmp_path, predictions, monkeypatch):
    out = tmp_path / "r.json"

    def full(path, text):
        raise OutputError(f"cannot write {path}: No space left on device", "free some disk space")

    monkeypatch.setattr("coral_cli.textio.write_text", full)
    clean_error(cli("evaluate", "-p", predictions, "--metrics", "avg_len", "--out", str(out)),
                f"cannot write {out}: No space left on device")
    assert not out.exists() and not (tmp_path / "r.items.json").exists()


def test_a_full_disk_while_logging_metrics_names_metrics_jsonl(tmp_path, monkeypatch):
    from coral_cli.runs import RunDir

    run = RunDir(tmp_path / "r")
    run.log({"event": "step", "step": 1})

    class Full:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")  # a write names no file

    monkeypatch.setattr(Path, "open", lambda self, *a, **k: Full())
    with pytest.raises(OSError) as info:
        run.log({"event": "step", "step": 2})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(run.metrics_path)
