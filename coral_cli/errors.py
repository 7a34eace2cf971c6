"""One error family for user mistakes: caught once at the CLI edge, printed as one line, exit 2.

Real bugs are not `CoralError`s: they keep their traceback.
"""

from __future__ import annotations

import errno


class CoralError(Exception):
    """A problem the user can fix: `message` says what is wrong, `hint` how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class ConfigError(CoralError):
    """An invalid recipe or flag: unknown key, wrong type, value out of range."""


class DataError(CoralError):
    """A missing or malformed data file; the message names the file and line."""


class AssetError(CoralError):
    """A missing pretrained asset (tokenizer, backbone, WordNet) or a damaged checkpoint."""


class OutputError(CoralError):
    """An output that cannot be written: disk full, read-only disk, no permission, a folder."""


DISK_FULL = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)
# the OSErrors that mean "your disk or permissions", not "our bug": caught at the CLI edge
ENVIRONMENT_ERRNOS = DISK_FULL | {errno.EROFS, errno.EACCES}


def output_error(exc: OSError, path: object = None, action: str = "write") -> OutputError:
    """`exc` raised while writing `path` (default: the file it names) as one clear error."""
    target = path if path is not None else (exc.filename or "a file")
    if exc.errno in DISK_FULL:
        fix = "free some disk space (or quota), or write to another disk"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "write to a folder you may write to, or fix its permissions"
    elif exc.errno == errno.EISDIR:
        fix = "pass a file path, not a folder"
    else:
        fix = "check the path and the disk"
    return OutputError(f"cannot {action} {target}: {exc.strerror or exc}", fix)
