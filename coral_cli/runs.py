"""The run folder every training command shares: runs/<name>/{config.toml, metrics.jsonl, checkpoints/}.

The resolved config is written first, so any run can be repeated exactly with
`--recipe runs/<name>/config.toml`. A training holds the folder's lock (`RunDir.lock`) from
before it writes config.toml until it ends, so two processes never train into one folder.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coral_cli.atomic import atomic_write_text, os_error_of, remove_stale_temps, restore_interrupted
from coral_cli.config.toml_out import dump_toml
from coral_cli.errors import ConfigError, CoralError

LOCK_FILE = ".lock"
RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # one folder name: no '/', '..', '.x' or '-x'
_held: dict[Path, int] = {}  # run folders this process has locked -> the thread that holds each


class RunInUse(CoralError):
    """Another process holds the run folder's lock."""


@dataclass(frozen=True)
class RunDir:
    """Paths of one run; `create` writes its config, `log` appends a metrics record."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, name: str) -> Path:
        """e.g. 'best', 'last', 'epoch-3'."""
        return self.checkpoints / name

    def create(self, config: Any, command: str) -> RunDir:
        """Make the folders and write the resolved config (atomically)."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        header = f"resolved config of run '{self.root.name}'\nrepeat with: {command} --recipe {self.config_path}"
        atomic_write_text(self.config_path, dump_toml(config, header))
        return self

    @contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Hold this run for the block: an exclusive `flock` on `<root>/.lock`, or `RunInUse`.

        The lock belongs to the open file, so the kernel drops it when the process dies: there
        are no stale locks to clear by hand. Nested use in one thread is free. On taking it, the
        folder is tidied (`tidy`), since no other writer can exist. Under torchrun only rank 0
        locks and tidies; the other ranks never write the folder. A folder the lock created is
        removed again when the block refuses the run (a `CoralError`) before it logged or saved
        anything (`_remove_if_unused`).
        """
        key, me = self.root.resolve(), threading.get_ident()
        if _held.get(key) == me or os.environ.get("RANK", "0") != "0":
            yield self
            return
        if key in _held:
            raise RunInUse(f"run folder {self.root} is in use by another training in this process",
                           "wait for it to end, or train a separate run with --name NEW")
        created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise RunInUse(f"run folder {self.root} is in use by another coral process{pid}",
                           f"wait for it to end{f' or stop it (kill {holder})' if pid else ''}; "
                           "or train a separate run with --name NEW") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[key] = me
        try:
            self.tidy()
            yield self
        except CoralError:
            if created:
                self._remove_if_unused()
            raise
        finally:
            del _held[key]
            os.close(fd)

    def _remove_if_unused(self) -> None:
        """Delete a folder this lock created for a run refused before it logged or saved anything
        (a bad --init, a missing dataset): it holds at most its lock, config.toml and an empty
        checkpoints/, so nothing is lost and no empty run is left behind."""
        for p in self.root.iterdir():
            if p.name not in (LOCK_FILE, self.config_path.name, self.checkpoints.name) \
                    or (p == self.checkpoints and any(p.iterdir())):
                return
        shutil.rmtree(self.root, ignore_errors=True)

    def tidy(self) -> None:
        """Put back a checkpoint whose atomic swap was killed between its two renames, and delete
        the temp folders of killed saves (call only under `lock`)."""
        if self.checkpoints.is_dir():
            for old in self.checkpoints.glob(".*.old"):
                restore_interrupted(self.checkpoints / old.name[1:-len(".old")])
        remove_stale_temps(self.checkpoints)
        remove_stale_temps(self.root, (self.config_path.name, self.metrics_path.name))  # not a table's predictions

    def clear(self) -> bool:
        """Delete everything in the run folder but its lock (call under `lock`); False if it held nothing."""
        found = [p for p in self.root.iterdir() if p.name != LOCK_FILE] if self.root.is_dir() else []
        for p in found:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        return bool(found)

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line (a step or an epoch) with a wall-clock timestamp; a full disk is an
        OSError naming metrics.jsonl (a line it cut short is skipped by `read_metrics`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with self.metrics_path.open("a", encoding="utf-8") as fh:
                fh.write(_line(record))
        except OSError as exc:
            raise (os_error_of(exc, self.metrics_path) or exc) from None

    def rewind_metrics(self, step: int) -> None:
        """Make metrics.jsonl describe the run continued from a checkpoint at `step`.

        What an earlier attempt logged after `step` (it is about to be redone) and its `end`
        record are dropped, then `{"event": "resume", "step": step}` is appended; a fresh start
        (`step` 0) keeps nothing. The file is rewritten atomically.
        """
        records = self.read_metrics()
        keep = [r for r in records if step and r.get("event") != "end" and (r.get("step") or 0) <= step]
        if len(keep) < len(records) or (step == 0 and self.metrics_path.exists()):
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))
        if step:
            self.log({"event": "resume", "step": step})

    def logged_step(self) -> int:
        """The last step with a logged training or evaluation record (0 if none)."""
        return max((r.get("step") or 0 for r in self.read_metrics() if r.get("event") in ("step", "eval")), default=0)

    def read_metrics(self) -> list[dict[str, Any]]:
        """All records; a line cut short by a crash (the last one) is ignored."""
        if not self.metrics_path.exists():
            return []
        out = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def run_name_problem(name: str) -> str | None:
    """Why `name` cannot name a run (or a table stage) folder, or None: it must be one path
    component of letters, digits, '.', '_' and '-', not starting with '.' or '-', so that
    runs/<name>/ is a folder inside runs/ (never runs/ itself, a parent, an absolute path, a hidden
    folder or something a shell reads as an option)."""
    if RUN_NAME.fullmatch(name):
        return None
    return (f"{name!r} is not a usable run folder name: one name (no '/') of letters, digits, '.', '_' "
            "and '-', starting with a letter, digit or '_'")


def check_run_name(name: str, flag: str = "--name") -> str:
    """`name` if it can name a run folder, else a `ConfigError` (checked before anything is written)."""
    problem = run_name_problem(name)
    if problem:
        raise ConfigError(f"{flag} {problem}", f"pass a plain folder name, e.g. {flag} generator-ce-2")
    return name


def run_dir(runs_dir: str | Path, name: str) -> RunDir:
    """`<runs_dir>/<name>` as a `RunDir`; `name` is checked by `check_run_name`."""
    return RunDir(Path(runs_dir) / check_run_name(name))


def _line(record: dict[str, Any]) -> str:
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    return json.dumps({"time": round(time.time(), 3), **clean}) + "\n"


def newest_checkpoint(runs_dir: str | Path, accept: Callable[[Path], bool]) -> Path | None:
    """The most recently written best/ or last/ under `runs_dir`/*/checkpoints/ that `accept`
    takes (e.g. "a generator checkpoint"), or None: what a command opens when none is named."""
    found = [c for c in Path(runs_dir).glob("*/checkpoints/*") if c.name in ("best", "last") and c.is_dir()]
    found.sort(key=lambda c: (c.stat().st_mtime, str(c)), reverse=True)
    return next((c for c in found if accept(c)), None)
