"""Checking and loading what `coral chat` needs; checks are cheap so errors come before the UI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coral_cli.chat.session import ChatSession, ChatSettings
from coral_cli.errors import AssetError, DataError


def check_checkpoints(checkpoint: Path, reward_checkpoint: Path | None) -> None:
    """Fail fast (exit 2) on a missing or foreign folder without loading any weights."""
    from coral_cli.rewards.checkpoint import read_reward_meta

    config = checkpoint / "config.json"
    if not config.is_file():
        raise AssetError(f"not a checkpoint folder: {checkpoint} (no config.json)",
                         "pass a generator checkpoint, e.g. runs/<name>/checkpoints/best")
    try:
        kind = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except json.JSONDecodeError as exc:
        raise AssetError(f"{config}: damaged JSON ({exc.msg})", "re-train or restore the checkpoint") from None
    if kind != "bart":
        raise AssetError(f"{checkpoint} is not a generator checkpoint", "pass a checkpoint written by 'coral coral train'")
    if reward_checkpoint is not None:
        read_reward_meta(reward_checkpoint)


def read_context_file(path: Path) -> list[str]:
    """Utterances to start from: one per line, a JSON list, or one DailyDialog `__eou__` line."""
    if not path.is_file():
        raise DataError(f"context file not found: {path}", "pass a text file with one utterance per line")
    text = path.read_text(encoding="utf-8").strip()
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
    from coral_cli.generator.model import load_generator
    from coral_cli.rewards import load_reward

    model, tok, meta = load_generator(checkpoint, device)
    reward = load_reward(reward_checkpoint, device) if reward_checkpoint else None
    budget = meta.get("data", {}).get("max_context_tokens", 256)
    return ChatSession(model, tok, reward, budget, settings, history)
