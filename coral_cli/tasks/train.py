"""Build a training run from its config and hand it to the shared trainer: `coral retriever train`
(paper §4.2) and `coral coral train` (CORAL eq. 2-3 or the CE baseline)."""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch

from coral_cli.atomic import atomic_write_text
from coral_cli.config.schema import CoralConfig, GenerateConfig
from coral_cli.device import cpu_bf16
from coral_cli.errors import ConfigError, CoralError
from coral_cli.generator.bart.model import build_generator
from coral_cli.generator.core.checkpoint import read_meta
from coral_cli.generator.core.policy import Policy, Seq2SeqPolicy
from coral_cli.generator.core.reference import frozen_copy
from coral_cli.generator.loading import adopt_init_architecture, load_policy
from coral_cli.generator.mirror.policy import mirror_policy
from coral_cli.generator.pretrained.causal import CausalPolicy
from coral_cli.generator.pretrained.checkpoint import check_resume_base
from coral_cli.generator.pretrained.lora import add_lora
from coral_cli.generator.pretrained.seq2seq_lm import PretrainedSeq2SeqPolicy
from coral_cli.generator.pretrained.sources import load_lm
from coral_cli.objectives.adalabel import AdaLabel
from coral_cli.objectives.coral import CoralObjective
from coral_cli.objectives.cross_entropy import CrossEntropy
from coral_cli.objectives.length_debias import LengthDebias, fit_on_validation
from coral_cli.objectives.mirror import MirrorObjective
from coral_cli.registry import REWARDS, SAMPLERS
from coral_cli.rewards.base import RewardModel
from coral_cli.rewards.callable import CallableReward
from coral_cli.rewards.checkpoint import build_reward, load_reward, read_reward_meta
from coral_cli.rewards.retrieval_data import retrieval_data
from coral_cli.runs import RunDir, newest_checkpoint
from coral_cli.samplers.base import SamplerEnv
from coral_cli.tasks.generator import GeneratorTask
from coral_cli.tasks.generator_data import generator_data
from coral_cli.tasks.retriever import RetrieverTask
from coral_cli.tokenizer import load_tokenizer
from coral_cli.training.distributed import DistInfo, broadcast, init_distributed
from coral_cli.training.fsdp import gathered
from coral_cli.training.loop import LoopState, Trainer
from coral_cli.training.state import has_state

RewardFn = Callable[[list[list[str]], list[str]], Any]  # f(contexts, responses) -> scores in [0, 1]


def load_training_reward(cfg: CoralConfig, device: torch.device) -> Any:
    """The frozen f_R behind R3: a retriever checkpoint of the type the config names, or a plain
    callable registered under that name (which needs no checkpoint)."""
    o = cfg.objective
    plugin = REWARDS.get(o.reward)
    if not (isinstance(plugin, type) and issubclass(plugin, RewardModel)):
        return CallableReward(plugin)
    if not o.reward_checkpoint:
        found = newest_checkpoint(cfg.runtime.runs_dir, lambda c: _retriever_kind(c) == o.reward)
        fix = (f"pass --reward-checkpoint {found} (the newest trained {o.reward} retriever)" if found else
               f"pass --reward-checkpoint DIR (train one with 'coral retriever train --model {o.reward}')")
        raise ConfigError("CORAL needs a trained retriever for its reward", f"{fix}, or use --loss ce")
    kind = read_reward_meta(o.reward_checkpoint)["model"]
    if kind != o.reward:
        raise ConfigError(f"--reward {o.reward} but {o.reward_checkpoint} holds a '{kind}' retriever",
                          f"pass --reward {kind} or a {o.reward} checkpoint")
    reward = load_reward(o.reward_checkpoint, device)
    reward.bf16 = cfg.train.bf16
    return reward


def _retriever_kind(folder: Path) -> str | None:
    """The retriever type of a reward checkpoint, None for anything else (or a damaged one)."""
    try:
        return read_reward_meta(folder).get("model")
    except CoralError:
        return None


def build_objective(cfg: CoralConfig, reward: Any, policy: Policy, pool_ids: list, device: torch.device) -> Any:
    """CE, Mirror's negative ELBO, or CORAL with the sampler plugins the config names (each built once)."""
    o = cfg.objective
    if o.loss == "ce":
        return CrossEntropy(policy, o.label_smoothing)
    if o.loss == "mirror":
        return MirrorObjective(policy, cfg.generator.mirror)
    if o.loss == "adalabel":  # gives the generator its auxiliary decoder before the optimizer is built
        return AdaLabel(policy, o.adalabel, cfg.generator.init)
    env = SamplerEnv(pool_ids, policy, device, o.sample_top_p, o.sample_temperature, o.sample_max_new_tokens,
                     bf16=cfg.train.bf16, kv_cache=cfg.generate.kv_cache)
    names = {"positive", o.negative_sampler} | ({o.on_policy_sampler} if o.policy == "mix" else set())
    samplers = {name: SAMPLERS.get(name)(env) for name in names}
    # the KL term's reference is the policy where training started (built before a resume loads last/):
    # LoRA adapters that start at zero need no copy (adapters off is the start); adapters from --init
    # (say, a CE-FT run) and full fine-tuning get a frozen copy
    fresh_adapters = hasattr(policy.model, "peft_config") and not cfg.generator.init
    # on the training device (under FSDP the policy is still in host memory here): a full copy per device
    reference = frozen_copy(policy.model).to(device) if o.kl_coef and not fresh_adapters else None
    return CoralObjective(o, reward, samplers, policy, reference)


def build_policy(cfg: CoralConfig, device: torch.device) -> tuple[Policy, dict[str, Any] | None]:
    """The generator to train, in training mode: the Mirror baseline's CVAE (`--loss mirror`, or a
    Mirror --init, which other losses refuse), an --init checkpoint, a pretrained causal or
    seq2seq LM (picked by its config's `is_encoder_decoder`; with LoRA
    adapters when `generator.lora.enabled`), or the paper's randomly initialised BART; plus the
    pretrained base ({spec, identity}) it came from, if any."""
    g = cfg.generator
    if cfg.objective.loss == "mirror" or (g.init and read_meta(g.init).get("backend") == "mirror"):
        return mirror_policy(cfg, device), None  # the Mirror baseline's own LSTM CVAE
    if g.init:
        adopt_init_architecture(cfg)
        policy, meta = load_policy(g.init, device, trainable=True)
        return policy, meta.get("base")
    if g.pretrained:
        model, tok, source = load_lm(g.pretrained, device, "auto")
        seq2seq = model.config.is_encoder_decoder
        if g.lora.enabled:
            model = add_lora(model, g.lora)
        policy = (PretrainedSeq2SeqPolicy if seq2seq else CausalPolicy)(model.train(), tok)
        return policy, {"spec": g.pretrained, "identity": source.identity}
    tok = load_tokenizer(cfg.tokenizer.name)
    return Seq2SeqPolicy(build_generator(g, tok).to(device), tok), None


def train_generator(cfg: CoralConfig, run: RunDir, listeners: list[Any], resume: bool = False,
                    reward: RewardFn | None = None) -> LoopState:
    """Train and return the final loop state; best/ and last/ land in `run.checkpoints`.
    `reward` replaces the configured retriever with a plain function f(contexts, responses).
    On a CPU, bf16 autocast only with runtime.cpu_bf16."""
    if resume and has_state(run.checkpoint("last")):
        check_resume_base(run.checkpoint("last"))  # a LoRA run's base must not have changed: before any loading
    with cpu_bf16(cfg.runtime.cpu_bf16):
        trainer = generator_trainer(cfg, run, listeners, reward, resume)
        try:
            return trainer.fit(resume)
        finally:
            trainer.close()


def generator_trainer(cfg: CoralConfig, run: RunDir, listeners: list[Any], reward: RewardFn | None = None,
                      resume: bool = False) -> Trainer:
    """The trainer for `cfg` (data, generator, reward, objective built; under torchrun, this rank's).
    `resume` from a last/ skips the length-debias fit: the checkpoint carries the run's own."""
    info, device = init_distributed(cfg.runtime.device)
    torch.manual_seed(cfg.runtime.seed)  # identical initial weights on every rank
    # FSDP builds the model in host memory: the trainer's fully_shard then moves each layer to the device
    # as its shard, so no device holds the whole model (one larger than a device trains, CE or off-policy)
    fsdp = info.enabled and cfg.train.strategy == "fsdp"
    policy, base = build_policy(cfg, torch.device("cpu") if fsdp else device)
    # T5 and Mirror's LSTMs have no position limit
    limit = getattr(getattr(policy.model, "config", None), "max_position_embeddings", 1 << 30) - 2
    if cfg.data.max_context_tokens > limit or cfg.data.max_response_tokens > limit:
        raise ConfigError(f"data budgets exceed the generator's {limit + 2} positions",
                          f"set data.max_context_tokens and max_response_tokens <= {limit}")
    f_r = None
    if cfg.objective.loss == "coral":
        f_r = CallableReward(reward) if reward is not None else load_training_reward(cfg, device)
    # the pool of every training utterance (tokenised: ~3 s) is only for CORAL's random negatives
    train = generator_data(cfg.data, "train", policy, pool=cfg.objective.loss == "coral")
    val = generator_data(cfg.data, "validation", policy)
    objective = build_objective(cfg, f_r, policy, train.get("pool_ids", []), device)
    task = GeneratorTask(policy, objective, train, val, cfg, device, f_r, base)
    trainer = Trainer(task, cfg.train, run, device, listeners, info)  # under FSDP: sharded from here on
    resuming = resume and has_state(run.checkpoint("last"))
    if cfg.objective.loss == "coral" and cfg.objective.length_debias == "residual" and not resuming:
        with gathered(task.model):  # a sharded model: every rank gathers it (a collective), rank 0 fits alone
            fit = fit_length_debias(cfg, policy, f_r, val, device, info)
        objective.length_debias = broadcast(fit, info)
        if info.is_main:  # beside config.toml, for the reader; the checkpoints carry it for a resume
            atomic_write_text(run.root / "length_debias.json", json.dumps(objective.length_debias.record(), indent=1))
    torch.manual_seed(cfg.runtime.seed + info.rank)  # on-policy samples differ across ranks
    return trainer


def fit_length_debias(cfg: CoralConfig, policy: Policy, reward: Any, val: dict[str, Any], device: torch.device,
                      info: DistInfo) -> LengthDebias | None:
    """Rank 0 fits f_R on reply length over validation references and the model's own nucleus
    samples (`objectives/length_debias.py`) under the run's seed, without moving the training RNG."""
    if not info.is_main:
        return None
    o = cfg.objective
    decoding = GenerateConfig(strategy="nucleus", top_p=o.sample_top_p, temperature=o.sample_temperature,
                              max_new_tokens=o.sample_max_new_tokens, min_new_tokens=1, kv_cache=cfg.generate.kv_cache)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.generate.seed)
        return fit_on_validation(policy, policy.model, reward, val, decoding, device, cfg.train.bf16,
                                 o.length_debias_pairs)


def train_retriever(cfg: CoralConfig, run: RunDir, listeners: list[Any], resume: bool = False) -> LoopState:
    """Build data and model from `cfg` and run the shared trainer; returns the final loop state."""
    with cpu_bf16(cfg.runtime.cpu_bf16):
        trainer = retriever_trainer(cfg, run, listeners)
        try:
            return trainer.fit(resume)
        finally:
            trainer.close()


def retriever_trainer(cfg: CoralConfig, run: RunDir, listeners: list[Any]) -> Trainer:
    """The trainer for a retriever (under torchrun: this rank's; rank 0 alone writes the run)."""
    if cfg.retriever.train.strategy == "fsdp":
        raise ConfigError("retriever.train.strategy = \"fsdp\" is for the generator only",
                          "use ddp for the retriever (it fits on one device)")
    info, device = init_distributed(cfg.runtime.device)
    torch.manual_seed(cfg.runtime.seed)  # identical initial weights on every rank
    tok = load_tokenizer(cfg.tokenizer.name)
    train = retrieval_data(cfg.data, "train", tok)
    val = retrieval_data(cfg.data, "validation", tok)
    model = build_reward(cfg.retriever, cfg.tokenizer.name).to(device)
    task = RetrieverTask(model, train, val, cfg, device)
    return Trainer(task, cfg.retriever.train, run, device, listeners, info)
