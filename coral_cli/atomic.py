"""Atomic file and directory writes, so an interrupted run never leaves a half-written file.

Files and folders get the modes the process umask gives ordinary ones (0644 / 0755 under umask
022), not the private 0600 / 0700 of `mkstemp` / `mkdtemp`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it before Python 3.13
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through a temp file in the same folder and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def old_copy(path: Path) -> Path:
    """Where `atomic_directory` parks the previous `path` during its two-rename swap."""
    return path.with_name(f".{path.name}.old")


def restore_interrupted(path: str | Path) -> bool:
    """Undo a swap killed between its two renames (`path` -> `.path.old`, then tmp -> `path`).

    Only that window leaves `path` missing while `.path.old` exists, and `.path.old` is then the
    complete previous folder: rename it back. Returns whether it did.
    """
    path = Path(path)
    old = old_copy(path)
    if path.exists() or not old.is_dir():
        return False
    os.replace(old, path)
    return True


def remove_stale_temps(folder: str | Path, names: tuple[str, ...] | None = None) -> list[Path]:
    """Delete the `.NAME.*.tmp` files and folders left in `folder` by killed atomic writes (of
    `names` only, if given), and a `.NAME.old` whose `NAME` is back (a kill while the swap deleted it).

    Only safe while nothing else writes those names (a run holds its lock): a live write's temp
    looks the same. Returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(".*.tmp") if p.name.count(".") >= 3]
    stale += [p for p in folder.glob(".*.old") if (folder / p.name[1:-len(".old")]).exists()]
    if names is not None:
        stale = [p for p in stale if p.name.startswith(tuple(f".{n}." for n in names))]
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside `path`; on success it replaces `path` in two renames.

    A crash inside the block leaves the old `path` (if any) untouched; a crash between the two
    renames leaves it as `.path.old`, which the next swap (or `restore_interrupted`) puts back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        old = None
        if path.exists():
            old = old_copy(path)
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
