"""Load a split of a dataset by name: bundled DailyDialog, a folder, DSTC7-Ubuntu or `hf:<name>`.

This is the one entry point the rest of coral uses for data: `load_pairs` for (context,
response) pairs, `load_dialogues` for whole dialogues, `utterance_pool` for random negatives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from datasets import Dataset

from coral_cli.config.schema import SPLITS, DataConfig
from coral_cli.data import dailydialog, ubuntu
from coral_cli.data.pairs import dialogue_pairs, distinct_utterances, pairs_to_dataset
from coral_cli.errors import DataError

DATA_DIR_ENV = "CORAL_DATA_DIR"
KNOWN = ("dailydialog", "ubuntu")


@dataclass(frozen=True)
class Source:
    """Where a dataset is read from: `kind` in {dailydialog, ubuntu, hf}; `location` a folder or name."""

    kind: str
    location: str

    def describe(self) -> str:
        return f"{self.kind} from {self.location}"


def resolve_source(cfg: DataConfig) -> Source:
    """`data_dir`, else $CORAL_DATA_DIR/<dataset>, else the bundled copy (DailyDialog only)."""
    name = cfg.dataset
    if name.startswith("hf:"):
        return Source("hf", name[3:])
    if name not in KNOWN:
        raise DataError(f"unknown dataset '{name}'", f"use one of {', '.join(KNOWN)} or hf:<name>")
    if cfg.data_dir:
        folder = Path(cfg.data_dir).expanduser()
        if not folder.is_dir():
            raise DataError(f"data folder not found: {folder}", "pass an existing folder to --data-dir")
        return Source(name, str(folder))
    env = os.environ.get(DATA_DIR_ENV)
    if env and (Path(env) / name).is_dir():
        return Source(name, str(Path(env) / name))
    if name == "dailydialog":
        return Source(name, str(dailydialog.bundled_dir()))
    raise DataError(
        f"no data folder for '{name}' (only DailyDialog is bundled)",
        f"pass --data-dir FOLDER or set ${DATA_DIR_ENV} to a folder with a '{name}' sub-folder",
    )


def load_dialogues(cfg: DataConfig, split: str) -> list[list[str]]:
    """Whole dialogues of `split` (dialogue-form sources only; Ubuntu src/tgt has pairs)."""
    _check_split(split)
    src = resolve_source(cfg)
    if src.kind == "dailydialog":
        return dailydialog.read_dialogues(dailydialog.find_split_file(Path(src.location), split))
    if src.kind == "hf":
        return _hf_dialogues(src.location, split)
    raise DataError("DSTC7-Ubuntu comes as context-response pairs, not whole dialogues",
                    "use the pairs (coral data show) instead")


def load_pairs(cfg: DataConfig, split: str) -> Dataset:
    """(dialogue_id, turn, context, response) pairs of `split`, first `max_pairs` if set."""
    _check_split(split)
    src = resolve_source(cfg)
    if src.kind == "ubuntu":
        kind, files = ubuntu.find_ubuntu_files(Path(src.location), split)
        if kind == "srctgt":
            pairs = ubuntu.read_src_tgt(*files)
        else:
            pairs = ubuntu.dstc7_pairs(ubuntu.read_dstc7_json(files[0]))
    else:
        min_context = cfg.min_context_turns.get(split, 1)
        pairs = dialogue_pairs(load_dialogues(cfg, split), split, min_context)
    if split == "train" and cfg.train_half:
        pairs = [p for p in pairs if _in_half(p.dialogue_id, cfg.train_half)]
    if cfg.max_pairs:
        pairs = pairs[: cfg.max_pairs]
    if not pairs:
        raise DataError(f"split '{split}' of {src.describe()} has no pairs", "check the data files")
    return pairs_to_dataset(pairs)


def utterance_pool(cfg: DataConfig, split: str = "train") -> list[str]:
    """Distinct utterances of `split` (contexts and responses): the RandomNegative pool (§3.3)."""
    src = resolve_source(cfg)
    if src.kind == "ubuntu":
        ds = load_pairs(replace(cfg, max_pairs=0), split)
        return distinct_utterances([*ds["context"], ds["response"]])
    dialogues = load_dialogues(cfg, split)
    if split == "train" and cfg.train_half:
        dialogues = [d for i, d in enumerate(dialogues) if _in_half(f"train-{i}", cfg.train_half)]
    return distinct_utterances(dialogues)


def _in_half(dialogue_id: str, half: str) -> bool:
    """Half 'a' holds the even-numbered dialogues (by the number after the last '-'), 'b' the odd."""
    digits = dialogue_id.rsplit("-", 1)[-1]
    index = int(digits) if digits.isdigit() else sum(map(ord, dialogue_id))
    return (index % 2 == 0) == (half == "a")


def available_splits(cfg: DataConfig) -> tuple[str, ...]:
    """The splits whose files exist for this source (DSTC7-Ubuntu here often has only test)."""
    src = resolve_source(cfg)
    if src.kind != "ubuntu":
        return SPLITS
    found = []
    for split in SPLITS:
        try:
            ubuntu.find_ubuntu_files(Path(src.location), split)
            found.append(split)
        except DataError:
            pass
    return tuple(found)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'", f"use one of {', '.join(SPLITS)}")


def _hf_dialogues(name: str, split: str) -> list[list[str]]:
    """A Hugging Face dataset (hub name or local folder) with a list-of-utterances column."""
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # the hub client raises many types; all mean "cannot load"
        raise DataError(f"cannot load Hugging Face dataset '{name}' split '{split}': {exc}",
                        "check the name, the split and your connection (or use a local folder)") from None
    for column in ("dialog", "dialogue", "utterances"):
        if column in ds.column_names:
            return [[u.strip() for u in row if u.strip()] for row in ds[column]]
    raise DataError(f"dataset '{name}' has no dialog column (columns: {', '.join(ds.column_names)})",
                    "it needs a column 'dialog' holding each dialogue's list of utterances")
