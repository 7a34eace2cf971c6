"""DailyDialog in its official `__eou__` form (Li et al. 2017): one dialogue per line.

The package bundles the official ijcnlp release, gzipped, with its licence and citation
(`assets/dailydialog/LICENSE.md`), so nothing needs downloading.
"""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

from coral_cli.errors import DataError

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
    opener = gzip.open if path.suffix == ".gz" else open
    dialogues: list[list[str]] = []
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
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
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read as UTF-8 text: {exc}", "check the file is not damaged") from None
    return dialogues
