"""DailyDialog in its official `__eou__` form (Li et al. 2017): one dialogue per line.

The package bundles the official ijcnlp release, gzipped, with its licence and citation
(`assets/dailydialog/LICENSE.md`), so nothing needs downloading.
"""

from __future__ import annotations

import gzip
import zlib
from importlib import resources
from pathlib import Path

from coral_cli.errors import DataError
from coral_cli.textio import decode, read_text

EOU = "__eou__"


def bundled_dir() -> Path:
    """The folder of the bundled, gzipped official release."""
    return Path(str(resources.files("coral_cli.data") / "assets" / "dailydialog"))


def find_split_file(folder: Path, split: str) -> Path:
    """`dialogues_<split>.txt[.gz]` in `folder` or in `folder/<split>/` (the official zip layout)."""
    for candidate in (folder, folder / split):
        for name in (f"dialogues_{split}.txt", f"dialogues_{split}.txt.gz"):
            if (candidate / name).is_file():
                return candidate / name
    raise DataError(
        f"no DailyDialog file for split '{split}' in {folder}",
        f"the folder must hold dialogues_{split}.txt (official __eou__ format), "
        "or leave data_dir empty to use the bundled copy",
    )


def read_dialogues(path: Path) -> list[list[str]]:
    """Utterances of each dialogue; a non-blank line that does not end in `__eou__` is an error."""
    dialogues: list[list[str]] = []
    for lineno, line in enumerate(_read(path).split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        if not line.endswith(EOU):
            raise DataError(
                f"{path}:{lineno}: malformed DailyDialog line (it does not end with '{EOU}')",
                f"each line must be one dialogue, every utterance followed by ' {EOU}'",
            )
        utterances = [u.strip() for u in line.split(EOU)[:-1]]
        if any(not u for u in utterances):
            raise DataError(f"{path}:{lineno}: empty utterance between '{EOU}' markers",
                            "remove the doubled marker")
        dialogues.append(utterances)
    return dialogues


def _read(path: Path) -> str:
    """The file's text; a damaged gzip stream or non-UTF-8 bytes are a `DataError`."""
    if path.suffix != ".gz":
        return read_text(path)
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: damaged gzip file ({exc})",
                        "download or copy the file again (gzip -t FILE checks it)") from None
    return decode(data, f"{path} (uncompressed)")
