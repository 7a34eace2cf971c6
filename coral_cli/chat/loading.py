"""Checking and loading what `coral chat` needs; checks are cheap so errors come before the UI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coral_cli.chat.session import ChatSession, ChatSettings
from coral_cli.errors import CoralError, DataError
from coral_cli.runs import newest_checkpoint
from coral_cli.textio import read_text

FALLBACK_MODEL = "smollm2"  # the bundled pretrained LM, offline


def default_checkpoint(runs_dir: str | Path = "runs") -> tuple[Path, str]:
    """What `coral chat` opens without -c: the newest generator checkpoint (best/ or last/) under
    `runs_dir`, else the bundled SmolLM2; and a line saying which."""
    from coral_cli.generator.core.checkpoint import FORMAT, read_meta

    def is_generator(folder: Path) -> bool:
        try:
            return read_meta(folder).get("format") == FORMAT
        except CoralError:  # a damaged coral.json: not a candidate
            return False

    found = newest_checkpoint(runs_dir, is_generator)
    if found is not None:
        return found, f"opening {found} (the newest generator checkpoint under {runs_dir}/; pass -c to choose)"
    return Path(FALLBACK_MODEL), (f"opening the bundled {FALLBACK_MODEL} (no generator checkpoint under "
                                  f"{runs_dir}/; pass -c to choose)")


def check_checkpoints(checkpoint: Path, reward_checkpoint: Path | None) -> None:
    """Fail fast (exit 2) on a missing or foreign folder without loading any weights."""
    # imported here, not at the top: torch and transformers would slow `coral chat --help`
    from coral_cli.generator.loading import check_policy_folder
    from coral_cli.rewards.checkpoint import read_reward_meta

    check_policy_folder(checkpoint)
    if reward_checkpoint is not None:
        read_reward_meta(reward_checkpoint)


def read_context_file(path: Path) -> list[str]:
    """Utterances to start from: one per line, a JSON list, or one DailyDialog `__eou__` line."""
    if not path.is_file():
        raise DataError(f"context file not found: {path}", "pass a text file with one utterance per line")
    text = read_text(path).strip()
    if text.startswith("["):
        try:
            return [str(u).strip() for u in json.loads(text) if str(u).strip()]
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})", "one JSON list of utterances") from None
    if "__eou__" in text:
        return [u.strip() for u in text.split("__eou__") if u.strip()]
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_session(checkpoint: Path, reward_checkpoint: Path | None, device: Any, settings: ChatSettings,
                 history: list[str]) -> ChatSession:
    from coral_cli.generator.loading import load_policy
    from coral_cli.rewards import load_reward

    policy, meta = load_policy(checkpoint, device)
    reward = load_reward(reward_checkpoint, device) if reward_checkpoint else None
    budget = meta.get("data", {}).get("max_context_tokens", 256)
    return ChatSession(policy, reward, budget, settings, history)
