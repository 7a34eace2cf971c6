"""Training state on disk without pickle: tensors in safetensors, everything else in JSON.

A `last/` checkpoint holds the model (in the task's own format), `optimizer.safetensors` +
`trainer_state.json` (optimizer scalars, loop position, RNG states). Written through
`atomic_directory`, so a kill mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from coral_cli.atomic import os_error_of
from coral_cli.errors import AssetError, CoralError

STATE_FILE = "trainer_state.json"
OPTIM_FILE = "optimizer.safetensors"


@dataclass
class LoopState:
    """Where the loop is: resuming from it continues exactly."""

    epoch: int = 0  # current epoch (0-based)
    batch_in_epoch: int = 0  # batches of `epoch` already consumed
    step: int = 0  # optimizer steps taken
    best: float | None = None  # best validation metric so far
    bad_evals: int = 0  # evaluations since the last improvement
    stopped: str = ""  # why training ended ('' while running)


def save_state(folder: Path, optimizer: torch.optim.Optimizer, loop: LoopState,
               extra: dict[str, torch.Tensor] | None = None) -> None:
    """Optimizer + loop position + RNG states (+ the task's `extra` tensors) into `folder`."""
    tensors: dict[str, torch.Tensor] = {f"extra.{k}": v for k, v in (extra or {}).items()}
    scalars: dict[str, Any] = {}
    opt_state = optimizer.state_dict()
    for pid, entry in opt_state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{key}"] = value
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    _write(folder / OPTIM_FILE, lambda path: save_file(tensors, str(path)))
    meta = {"loop": asdict(loop), "param_groups": opt_state["param_groups"], "scalars": scalars}
    _write(folder / STATE_FILE, lambda path: path.write_text(json.dumps(meta, indent=1), encoding="utf-8"))


def _write(path: Path, write: Callable[[Path], Any]) -> None:
    """`write(path)`; a full disk is an `OSError` naming `path`, even from safetensors' own error type
    (`atomic_directory` renames it to the checkpoint's final folder and the CLI exits 2)."""
    try:
        write(path)
    except Exception as exc:
        err = os_error_of(exc, path)
        if err is None:
            raise
        raise err from exc


def load_state(folder: Path, optimizer: torch.optim.Optimizer) -> tuple[LoopState, dict[str, torch.Tensor]]:
    """Restore what `save_state` wrote -> (loop state, the task's extra tensors); a damaged or
    foreign folder is an `AssetError`."""
    meta = _read(folder / STATE_FILE, lambda path: json.loads(path.read_text(encoding="utf-8")))
    tensors = _read(folder / OPTIM_FILE, lambda path: load_file(str(path)))
    state: dict[int, dict[str, Any]] = {}
    try:
        for key, value in tensors.items():
            if key.startswith("state."):
                _, pid, name = key.split(".", 2)
                state.setdefault(int(pid), {})[name] = value
        for key, value in meta["scalars"].items():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        torch.set_rng_state(tensors["rng.cpu"])
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError) as exc:  # foreign or mismatched contents
        raise _damaged(folder, f"{folder / OPTIM_FILE} + {STATE_FILE} do not fit this optimizer", exc) from None
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    extra = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
    return LoopState(**meta["loop"]), extra


def _read(path: Path, read: Callable[[Path], Any]) -> Any:
    try:
        return read(path)
    except Exception as exc:  # missing file, bad JSON, damaged safetensors
        raise _damaged(path.parent, f"{path} is missing or damaged", exc) from None


def _damaged(folder: Path, what: str, exc: Exception) -> AssetError:
    why = (str(exc).splitlines() or [""])[0] or type(exc).__name__
    return AssetError(f"cannot resume from {folder}: {what} ({why})",
                      "the checkpoint is damaged; start the run again under another --name")


def has_state(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file()


def check_resumable(run: Any) -> bool:
    """Whether `run` (a `RunDir`) has a last/ to resume from. Without one, a run that logged no
    step starts from 0 (nothing is lost: False); one that did is a `CoralError`, not a silent
    restart that would redo and overwrite its progress."""
    last = run.checkpoint("last")
    if has_state(last):
        return True
    if logged := run.logged_step():
        raise CoralError(f"cannot resume {run.root}: it logged training up to step {logged} but has no "
                         f"checkpoint ({last} is missing)",
                         "start it again from scratch under another --name (or delete the run folder)")
    return False


def saved_step(folder: Path) -> int | None:
    """The optimizer step a checkpoint written by `save_state` resumes from; None if there is none."""
    try:
        return int(json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))["loop"]["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
