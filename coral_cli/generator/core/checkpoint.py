"""Checkpoint I/O every generator backend shares: coral.json (the one reader and writer), the
safetensors weights (the one loader: never a pickle) and the tokenizer files. Each way a folder
can be wrong (damaged, another architecture, NaN) is one message and a `fix:`, never a traceback.

Every generator checkpoint holds coral.json: {"format": "coral-generator", "coral_version", ...
the backend's own keys}; the paper's BART checkpoints may lack it (then "backend" is "seq2seq").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from coral_cli import __version__
from coral_cli.errors import AssetError

FORMAT = "coral-generator"
META_FILE = "coral.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")  # either one loads the WordPiece tokenizer
RESTORE = "restore the checkpoint, or start the run again without --resume"


def read_meta(folder: str | Path) -> dict[str, Any]:
    """coral.json of a generator checkpoint ({} when absent, as in the paper's BART checkpoints)."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AssetError(f"{path}: damaged JSON ({exc})", "re-train or restore the checkpoint") from None
    return meta if isinstance(meta, dict) else {}


def write_meta(folder: str | Path, fields: dict[str, Any]) -> None:
    """coral.json = format + coral_version + the backend's `fields` (in that order)."""
    meta = {"format": FORMAT, "coral_version": __version__, **fields}
    (Path(folder) / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def backend_of(meta: dict[str, Any]) -> str:
    """The backend a coral.json names: 'seq2seq' (the paper's BART, also when absent), 'mirror',
    'causal' or 'seq2seq-lm'."""
    return str(meta.get("backend", "seq2seq"))


def check_weights(folder: Path, name: str = WEIGHTS_FILE) -> Path:
    """The checkpoint's safetensors file `name`; pickles (*.bin) are never loaded."""
    weights = folder / name
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.glob("*.bin"))
        found = f" (found {', '.join(pickles)}: pickle files are not loaded)" if pickles else ""
        raise AssetError(f"{folder} has no {name}{found}",
                         "coral loads safetensors files only: re-save it with "
                         "save_pretrained(..., safe_serialization=True)")
    return weights


def check_tokenizer_files(folder: Path, fix: str = "copy the tokenizer files of the run back into the folder") -> None:
    """A WordPiece checkpoint must carry its tokenizer (either of `TOKENIZER_FILES`)."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise AssetError(f"{folder} has no tokenizer files ({' or '.join(TOKENIZER_FILES)})", fix)


def read_weights(path: Path, fix: str = RESTORE) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a truncated or corrupt one is an `AssetError`."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise AssetError(f"{path} is damaged: {str(exc).splitlines()[0]}", fix) from None


def check_finite(state: dict[str, torch.Tensor], where: Path) -> None:
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise AssetError(f"{where}: weights hold NaN or inf ({', '.join(bad[:3])}"
                         + (f", +{len(bad) - 3} more" if len(bad) > 3 else "") + ")",
                         "the run that wrote it diverged: use an earlier checkpoint, e.g. best/ or a lower --lr")


def load_exactly(module: nn.Module, path: Path, fix: str = "resume with the config the run was started with",
                 what: str = "this model") -> None:
    """`path`'s tensors into `module` (`what` names it in errors): the same names and shapes, all
    finite, or an `AssetError`."""
    state = read_weights(path)
    own = module.state_dict()
    wrong = sorted(set(own) ^ set(state)) or [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        raise AssetError(f"{path} does not fit {what} ({', '.join(wrong[:3])})", fix)
    check_finite(state, path)
    module.load_state_dict(state)
