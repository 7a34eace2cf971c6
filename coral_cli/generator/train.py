"""`coral coral train`: build data, generator, reward and objective from the config and run the
shared trainer."""

from __future__ import annotations

from typing import Any

import torch

from coral_cli.config.schema import CoralConfig
from coral_cli.data.encode import encode_pairs
from coral_cli.data.sources import load_pairs
from coral_cli.training.distributed import init_distributed
from coral_cli.errors import ConfigError
from coral_cli.generator.model import build_generator, load_generator
from coral_cli.generator.task import GeneratorTask
from coral_cli.objectives.coral import CoralObjective
from coral_cli.objectives.cross_entropy import CrossEntropy
from coral_cli.registry import SAMPLERS
from coral_cli.rewards.checkpoint import load_reward, read_reward_meta
from coral_cli.rewards.retrieval_data import retrieval_data
from coral_cli.runs import RunDir
from coral_cli.samplers.base import SamplerEnv
from coral_cli.tokenizer import load_tokenizer
from coral_cli.training.loop import Trainer


def load_training_reward(cfg: CoralConfig, device: torch.device) -> Any:
    """The frozen retriever f_R behind R3; its type must be the one the config names."""
    o = cfg.objective
    if not o.reward_checkpoint:
        raise ConfigError("CORAL needs a trained retriever for its reward",
                          "pass --reward-checkpoint DIR (train one with 'coral retriever train'), or use --loss ce")
    kind = read_reward_meta(o.reward_checkpoint)["model"]
    if kind != o.reward:
        raise ConfigError(f"--reward {o.reward} but {o.reward_checkpoint} holds a '{kind}' retriever",
                          f"pass --reward {kind} or a {o.reward} checkpoint")
    return load_reward(o.reward_checkpoint, device)


def build_objective(cfg: CoralConfig, reward: Any, tok: Any, pool_ids: list, device: torch.device) -> Any:
    o = cfg.objective
    if o.loss == "ce":
        return CrossEntropy(o.label_smoothing)
    env = SamplerEnv(pool_ids, tok, device, o.sample_top_p, o.sample_temperature, o.sample_max_new_tokens)
    names = {"positive", o.negative_sampler} | ({o.on_policy_sampler} if o.policy == "mix" else set())
    samplers = {name: SAMPLERS.get(name)(env) for name in names}
    return CoralObjective(o, reward, samplers, tok)


def train_generator(cfg: CoralConfig, run: RunDir, listeners: list[Any], resume: bool = False) -> Any:
    """Train and return the final loop state; best/ and last/ land in `run.checkpoints`."""
    return generator_trainer(cfg, run, listeners).fit(resume)


def generator_trainer(cfg: CoralConfig, run: RunDir, listeners: list[Any]) -> Trainer:
    """The trainer for `cfg` (data, generator, reward, objective built; under torchrun, this rank's)."""
    info, device = init_distributed(cfg.runtime.device)
    torch.manual_seed(cfg.runtime.seed)  # identical initial weights on every rank
    reward = load_training_reward(cfg, device) if cfg.objective.loss == "coral" else None
    if cfg.generator.init:
        model, tok, _ = load_generator(cfg.generator.init, device)
        model.train()
    else:
        tok = load_tokenizer(cfg.tokenizer.name)
        model = build_generator(cfg.generator, tok).to(device)
    limit = model.config.max_position_embeddings - 2
    if cfg.data.max_context_tokens > limit or cfg.data.max_response_tokens > limit:
        raise ConfigError(f"data budgets exceed the generator's {limit + 2} positions",
                          f"set data.max_context_tokens and max_response_tokens <= {limit}")
    train = retrieval_data(cfg.data, "train", tok)
    val = encode_pairs(load_pairs(cfg.data, "validation"), tok, cfg.data).select_columns(["context_ids", "response_ids"])[:]
    objective = build_objective(cfg, reward, tok, train.pool_ids, device)
    data = {"context_ids": train.context_ids, "response_ids": train.response_ids, "pool_index": train.pool_index}
    task = GeneratorTask(model, tok, objective, data, val, cfg, device, reward)
    trainer = Trainer(task, cfg.train, run, device, listeners, info)
    torch.manual_seed(cfg.runtime.seed + info.rank)  # on-policy samples differ across ranks
    return trainer
