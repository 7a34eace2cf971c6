"""`coral retriever eval`: load a checkpoint, build the split's candidates, report metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coral_cli.config.schema import CoralConfig
from coral_cli.data import ubuntu
from coral_cli.data.sources import resolve_source
from coral_cli.device import pick_device
from coral_cli.rewards.checkpoint import load_reward
from coral_cli.rewards.evaluate import EVAL_SEED, evaluate_examples, evaluate_pool
from coral_cli.rewards.retrieval_data import retrieval_data


def evaluate_checkpoint(checkpoint: str | Path, cfg: CoralConfig, split: str, candidates: int = 10) -> dict[str, Any]:
    """Metrics plus what produced them (checkpoint, data, protocol)."""
    model = load_reward(checkpoint, pick_device(cfg.runtime.device))
    src = resolve_source(cfg.data)
    protocol = f"1 true + {candidates - 1} random distinct utterances of the split's pool, seed {EVAL_SEED}"
    if src.kind == "ubuntu":
        kind, files = ubuntu.find_ubuntu_files(Path(src.location), split)
        if kind == "json":
            examples = ubuntu.read_dstc7_json(files[0])
            if cfg.data.max_pairs:
                examples = examples[: cfg.data.max_pairs]
            metrics = evaluate_examples(model, examples, model.cfg.max_context_tokens)
            protocol = "official DSTC7 candidates"
            return _report(checkpoint, cfg, split, protocol, metrics, model)
    data = retrieval_data(cfg.data, split, model.tokenizer)
    metrics = evaluate_pool(model, data, candidates)
    return _report(checkpoint, cfg, split, protocol, metrics, model)


def _report(checkpoint: Any, cfg: CoralConfig, split: str, protocol: str, metrics: dict[str, Any], model: Any) -> dict[str, Any]:
    return {
        "checkpoint": str(checkpoint),
        "model": model.cfg.model,
        "dataset": cfg.data.dataset,
        "source": resolve_source(cfg.data).describe(),
        "split": split,
        "protocol": protocol,
        "metrics": metrics,
    }
