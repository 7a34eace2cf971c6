"""`coral coral train`: build data, generator and objective from the config and run the trainer."""

from __future__ import annotations

from typing import Any

import torch

from coral_cli.config.schema import CoralConfig
from coral_cli.data.encode import encode_pairs
from coral_cli.data.sources import load_pairs
from coral_cli.device import pick_device
from coral_cli.errors import ConfigError
from coral_cli.generator.model import build_generator, load_generator
from coral_cli.generator.task import GeneratorTask
from coral_cli.objectives.cross_entropy import CrossEntropy
from coral_cli.runs import RunDir
from coral_cli.tokenizer import load_tokenizer
from coral_cli.training.loop import Trainer


def build_objective(cfg: CoralConfig) -> Any:
    if cfg.objective.loss == "ce":
        return CrossEntropy(cfg.objective.label_smoothing)
    raise ConfigError(f"unknown loss '{cfg.objective.loss}'", "use --loss ce")


def train_generator(cfg: CoralConfig, run: RunDir, listeners: list[Any], resume: bool = False) -> Any:
    """Train and return the final loop state; best/ and last/ land in `run.checkpoints`."""
    device = pick_device(cfg.runtime.device)
    torch.manual_seed(cfg.runtime.seed)
    if cfg.generator.init:
        model, tok, _ = load_generator(cfg.generator.init, device)
    else:
        tok = load_tokenizer(cfg.tokenizer.name)
        model = build_generator(cfg.generator, tok).to(device)
    limit = cfg.generator.max_positions - 2
    if cfg.data.max_context_tokens > limit or cfg.data.max_response_tokens > limit:
        raise ConfigError(f"data budgets exceed the generator's {cfg.generator.max_positions} positions",
                          f"set data.max_context_tokens and max_response_tokens <= {limit}")
    columns = ("context_ids", "response_ids")
    train = encode_pairs(load_pairs(cfg.data, "train"), tok, cfg.data).select_columns(list(columns))[:]
    val = encode_pairs(load_pairs(cfg.data, "validation"), tok, cfg.data).select_columns(list(columns))[:]
    task = GeneratorTask(model, tok, build_objective(cfg), train, val, cfg, device)
    return Trainer(task, cfg.train, run, device, listeners).fit(resume)
