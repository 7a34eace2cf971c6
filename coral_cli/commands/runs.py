"""Opening a run folder for a training command: new runs refuse to overwrite, --resume reuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from coral_cli.commands.options import load_config
from coral_cli.errors import CoralError


def open_run(recipe: Optional[Path], sets: Optional[list[str]], flags: dict[str, Any], name: Optional[str],
             default_name: str, resume: bool, command: str) -> tuple[Any, Any]:
    """Resolve the config and the `RunDir`; a resumed run starts from its saved config.toml."""
    from coral_cli.runs import run_dir

    cfg = load_config(recipe, sets, flags)
    run = run_dir(cfg.runtime.runs_dir, name or default_name.format(**vars(cfg)))
    if resume:
        if not run.config_path.exists():
            raise CoralError(f"nothing to resume: {run.config_path} does not exist", "drop --resume to start the run")
        cfg = load_config(recipe or run.config_path, sets, flags)
    elif run.root.exists() and any(run.checkpoints.glob("*")):
        raise CoralError(f"run folder {run.root} already has checkpoints",
                         "pass --resume to continue it, or --name NEW for a fresh run")
    run.create(cfg, command)
    return cfg, run
