"""Tiny configs built from config for fast CPU tests (no downloads)."""

from __future__ import annotations

from typing import Any

from coral_cli.config import resolve


def tiny_retriever_overrides(model: str, **extra: Any) -> dict[str, Any]:
    over: dict[str, Any] = {
        "retriever.model": model,
        "retriever.backbone": "random",
        "retriever.random_hidden": 32,
        "retriever.random_layers": 1,
        "retriever.mlp_hidden": [32, 16],
        "retriever.max_context_tokens": 48,
        "retriever.max_response_tokens": 24,
        "retriever.dropout": 0.0,
        "retriever.negatives": 3,
        "retriever.eval_contexts": 64,
        "data.max_pairs": 64,
        "retriever.train.lr": 3e-3,
        "retriever.train.warmup_steps": 20,
        "retriever.train.max_epochs": 1000,
        "retriever.train.batch_tokens": 2048,
        "retriever.train.log_every": 5,
        "retriever.train.patience": 0,
    }
    if model == "esim":
        over["retriever.args"] = {"hidden": 32}
    over.update(extra)
    return over


def tiny_config(model: str = "bert", **extra: Any):
    return resolve(None, tiny_retriever_overrides(model, **extra))
