"""The run folder every training command shares: runs/<name>/{config.toml, metrics.jsonl, checkpoints/}.

The resolved config is written first, so any run can be repeated exactly with
`--recipe runs/<name>/config.toml`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coral_cli.atomic import atomic_write_text
from coral_cli.config.toml_out import dump_toml


@dataclass(frozen=True)
class RunDir:
    """Paths of one run; `create` writes its config, `log` appends a metrics record."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, name: str) -> Path:
        """e.g. 'best', 'last', 'epoch-3'."""
        return self.checkpoints / name

    def create(self, config: Any, command: str) -> RunDir:
        """Make the folders and write the resolved config (atomically)."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        header = f"resolved config of run '{self.root.name}'\nrepeat with: {command} --recipe {self.config_path}"
        atomic_write_text(self.config_path, dump_toml(config, header))
        return self

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line (a step or an epoch) with a wall-clock timestamp."""
        self.root.mkdir(parents=True, exist_ok=True)
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.metrics_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": round(time.time(), 3), **clean}) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """All records; a line cut short by a crash (the last one) is ignored."""
        if not self.metrics_path.exists():
            return []
        out = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def run_dir(runs_dir: str | Path, name: str) -> RunDir:
    """`<runs_dir>/<name>` as a `RunDir`."""
    return RunDir(Path(runs_dir) / name)
