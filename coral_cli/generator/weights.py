"""Reading a safetensors weights file into a model for loading and resuming: one message and a
`fix:` for each way it can be wrong (damaged, another architecture, NaN), never a traceback."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from coral_cli.errors import AssetError

RESTORE = "restore the checkpoint, or start the run again without --resume"


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a truncated or corrupt one is an `AssetError`."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise AssetError(f"{path} is damaged: {str(exc).splitlines()[0]}", RESTORE) from None


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
