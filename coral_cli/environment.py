"""What `coral env` reports: package versions, the chosen device, data and asset locations."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

from coral_cli import __version__
from coral_cli.device import describe_device
from coral_cli.errors import CoralError

PACKAGES = ("torch", "transformers", "datasets", "tokenizers", "sacrebleu", "nltk", "typer", "rich", "textual", "gguf",
            "peft")


def environment_report(device: str = "auto") -> dict[str, dict[str, Any]]:
    """Three sections: versions, device, paths."""
    from coral_cli.config.schema import DataConfig
    from coral_cli.data.dailydialog import bundled_dir
    from coral_cli.data.encode import CACHE_ENV, cache_dir
    from coral_cli.data.sources import DATA_DIR_ENV
    from coral_cli.generator.pretrained.sources import REGISTRY
    from coral_cli.tokenizer import BUNDLED_PACKAGE, bundled_model_path

    versions: dict[str, Any] = {"coral": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in PACKAGES:
        versions[pkg] = _version(pkg)
    try:
        backbone: str | None = str(bundled_model_path())
    except CoralError as exc:
        backbone = f"missing ({exc.hint})"
    paths = {
        "bundled_dailydialog": str(bundled_dir()),
        DATA_DIR_ENV: os.environ.get(DATA_DIR_ENV),
        CACHE_ENV: os.environ.get(CACHE_ENV),
        "cache_dir": str(cache_dir(DataConfig())),
        f"tokenizer/backbone ({BUNDLED_PACKAGE})": backbone,
        **{f"pretrained LM '{name}' ({REGISTRY[name].package})": _bundled_lm(name) for name in REGISTRY},
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE"),
    }
    return {"versions": versions, "device": describe_device(device), "paths": paths}


def _bundled_lm(name: str) -> str:
    """The .gguf path of a bundled pretrained LM, or that it is missing and how to install it."""
    from coral_cli.generator.pretrained.sources import bundled_gguf

    try:
        return str(bundled_gguf(name))
    except CoralError as exc:
        return f"missing ({exc.hint})"


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None
