"""Atomic file and directory writes, so an interrupted run never leaves a half-written file.

Files and folders get the modes the process umask gives ordinary ones (0644 / 0755 under umask
022), not the private 0600 / 0700 of `mkstemp` / `mkdtemp`. A write to a symlink goes to the file it
points to (the link stays); a device, FIFO or socket is refused, never replaced by a regular file.
A failed write raises an `OSError` naming the file it was writing (the final name, not the temp's),
even where the library that wrote it (safetensors, tokenizers) raised its own error type.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from coral_cli.errors import CoralError, OutputError

_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how Rust libraries (safetensors, tokenizers) report an io::Error
_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
          stat.S_IFSOCK: "a socket"}


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it before Python 3.13
    os.umask(mask)
    return mask


def special_file(path: str | Path) -> str | None:
    """What `path` (a symlink followed) is when it exists but is neither a regular file nor a
    folder, e.g. "a FIFO"; else None. Only `stat`s it: a FIFO is never opened (that would block)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else _KINDS.get(stat.S_IFMT(mode), "a special file")


def write_target(path: str | Path) -> Path:
    """The file a write to `path` must replace: a symlink's target (so the link survives and the
    temp file lands in the target's folder); a device, FIFO or socket is an `OutputError`."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    kind = special_file(path)
    if kind is not None:
        raise OutputError(f"cannot write {path}: it is {kind}, not a regular file",
                          "pass the path of a regular file (to discard the output, leave out --out)")
    return path


def os_error_of(exc: BaseException, filename: str | Path | None = None) -> OSError | None:
    """`exc` as an `OSError` (naming `filename` if it names no file): an OSError itself, or a Rust
    library's error that wraps one ("... No space left on device (os error 28)"); else None."""
    if isinstance(exc, OSError):
        if exc.errno is None:
            return None
        code, text, name = exc.errno, exc.strerror, exc.filename
    elif isinstance(exc, Exception) and not isinstance(exc, CoralError) and (m := _OS_ERROR.search(str(exc))):
        code, text, name = int(m.group(1)), None, None
    else:
        return None
    name = name if name is not None else filename
    return OSError(code, text or os.strerror(code), None if name is None else str(name))


def _renamed(exc: BaseException, tmp: Path | None, path: Path) -> OSError | None:
    """`exc`, raised while writing `tmp` to become `path`, as an OSError naming `path` (or the file
    in it) rather than the temp; None where the original should propagate as it is."""
    err = os_error_of(exc)
    if err is None:
        return None
    inside = None
    if err.filename is not None and tmp is not None:
        try:
            inside = Path(err.filename).relative_to(tmp)
        except ValueError:
            pass
    if inside is None and err.filename is not None and tmp is not None:  # another file, e.g. one being read
        return None if isinstance(exc, OSError) else err
    return OSError(err.errno, err.strerror, str(path / inside if inside is not None and inside.parts else path))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through a temp file in the same folder and `os.replace`.

    A symlink's target is written (`write_target`); a failed write is an `OSError` naming `path`."""
    path = write_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        named = _renamed(exc, None, path)  # whatever failed (temp, write, rename) was writing `path`
        if named is None:
            raise
        raise named from exc
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
    A failed write (an OSError, or safetensors' error on a full disk) is an `OSError` naming the
    file under `path` when known, else `path`, so the CLI reports it as one line, exit 2.
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
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        named = _renamed(exc, tmp, path)
        if named is None:
            raise
        raise named from exc
