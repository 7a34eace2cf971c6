"""One error family for user mistakes: caught once at the CLI edge, printed as one line, exit 2.

Real bugs are not `CoralError`s: they keep their traceback.
"""

from __future__ import annotations


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
