"""MAUDE-style reference-free scores (Sinha et al. 2020; paper §4.4): the mean f_R(context,
response) of a trained retriever. Evaluators must be independent of the training reward, or
CORAL's own objective is being measured; `fingerprint` lets the report say which was used."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from coral_cli.rewards.checkpoint import load_reward, read_reward_meta


def fingerprint(checkpoint: str | Path) -> str:
    """sha1 of the weights file: identical weights under another path are still the same model."""
    h = hashlib.sha1()
    with open(Path(checkpoint) / "model.safetensors", "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe(checkpoint: str | Path) -> dict[str, Any]:
    meta = read_reward_meta(checkpoint)
    return {"checkpoint": str(checkpoint), "model": meta["model"], "sha1": fingerprint(checkpoint)}


def mean_reward(checkpoint: str | Path, contexts: list[list[str]], responses: list[str], device: Any) -> float:
    """Mean f_R over the pairs, scored in batches on `device`."""
    return float(sum(item_rewards(checkpoint, contexts, responses, device))) / max(1, len(responses))


def item_rewards(checkpoint: str | Path, contexts: list[list[str]], responses: list[str], device: Any) -> list[float]:
    """f_R of each pair, scored in batches on `device` (the per-context scores a bootstrap resamples)."""
    model = load_reward(checkpoint, device)
    return [float(x) for x in model.score(contexts, responses).tolist()]
