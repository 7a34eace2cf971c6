import sys

import pytest

from coral_cli.atomic import atomic_directory, atomic_write_text
from coral_cli.config import resolve
from coral_cli.runs import run_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_run_dir_writes_a_config_that_repeats_the_run(tmp_path):
    cfg = resolve(None, {"data.max_pairs": 12, "runtime.seed": 5})
    run = run_dir(tmp_path, "exp1").create(cfg, "coral coral train")
    assert run.checkpoints.is_dir()
    text = run.config_path.read_text()
    assert "repeat with: coral coral train --recipe" in text
    assert resolve(run.config_path) == cfg
    assert tomllib.loads(text)["data"]["max_pairs"] == 12


def test_metrics_log_survives_a_torn_last_line(tmp_path):
    run = run_dir(tmp_path, "exp").create(resolve(), "x")
    run.log({"step": 1, "loss": 2.5})
    run.log({"step": 2, "loss": 2.0})
    with run.metrics_path.open("a") as fh:
        fh.write('{"step": 3, "lo')
    assert [r["step"] for r in run.read_metrics()] == [1, 2]


def test_atomic_directory_keeps_the_old_one_on_failure(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "weights").write_text("v2-partial")
            raise RuntimeError("killed mid-write")
    assert (target / "weights").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    atomic_write_text(target / "note.txt", "hello")
    assert (target / "note.txt").read_text() == "hello"
