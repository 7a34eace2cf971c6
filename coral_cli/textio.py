"""Text in and out the one way: inputs are UTF-8 (a leading BOM dropped), outputs are written
atomically. A Latin-1 file, a full disk or a read-only folder is one clear error naming the file,
never a traceback.
"""

from __future__ import annotations

import codecs
import sys
from collections.abc import Iterator
from pathlib import Path

from coral_cli.atomic import atomic_write_text
from coral_cli.errors import CoralError, DataError, output_error

UTF8_FIX = "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8)"


def decode(data: bytes, name: str, error: type[CoralError] = DataError, line: int = 1, offset: int = 0) -> str:
    """`data` as UTF-8 text without a leading BOM; `line` / `offset` place `data` in a longer stream."""
    skip = len(codecs.BOM_UTF8) if offset == 0 and data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = skip + exc.start
        line += data.count(b"\n", 0, at)
        raise error(f"{name}:{line}: not UTF-8 text (byte 0x{data[at]:02x} at offset {offset + at})", UTF8_FIX) from None


def read_text(path: str | Path, error: type[CoralError] = DataError, fix: str = "check the path") -> str:
    """The whole file as text; a missing or unreadable file is `error` too."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}", fix) from None
    return decode(data, str(path), error)


def stdin_lines(name: str = "stdin") -> Iterator[str]:
    """stdin line by line as it arrives (interactive use), each line decoded strictly."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text-only stream (an embedding app): already decoded
        yield from sys.stdin
        return
    offset = 0
    for lineno, raw in enumerate(stream, start=1):
        yield decode(raw, name, line=lineno, offset=offset)
        offset += len(raw)


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically; a full disk or a read-only folder is an `OutputError`."""
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise output_error(exc, path) from None
