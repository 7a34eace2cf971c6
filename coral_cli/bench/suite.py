"""One benchmark run: every stage at the sizes of the given config, on the same data.

- CE training throughput of our trainer vs transformers' Seq2SeqTrainer (same model, same pairs,
  its batch size = our mean examples per token-budget batch);
- a CORAL mix-policy step vs a CE step (the cost of sampling + reward in the loop);
- our generation vs the loop a user writes: `model.generate` over batches of 64 in input order
  (responses/s, equal outputs lengths; a per-example loop as an extra line);
- reward scoring pairs/s of each retriever; peak memory of each stage.
"""

from __future__ import annotations

import copy
import dataclasses
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coral_cli import __version__
from coral_cli.bench.stages import generation_speed, hf_trainer_throughput, reward_speed, train_throughput
from coral_cli.config.schema import CoralConfig
from coral_cli.data.encode import encode_pairs
from coral_cli.data.sources import load_pairs
from coral_cli.device import autocast_dtype, cpu_bf16, describe_device, pick_device
from coral_cli.generator.model import build_generator
from coral_cli.generator.policy import Seq2SeqPolicy
from coral_cli.objectives.cross_entropy import CrossEntropy
from coral_cli.rewards.checkpoint import build_reward, load_reward
from coral_cli.rewards.retrieval_data import retrieval_data
from coral_cli.tasks.train import build_objective
from coral_cli.tokenizer import load_tokenizer
from coral_cli.training.batching import token_budget_batches


def run_bench(cfg: CoralConfig, steps: int, contexts: int, pairs: int, rewards: tuple[str, ...]) -> dict[str, Any]:
    """Every measurement, ours and the anchors', at one precision: bf16 autocast on CUDA, and on a
    CPU with runtime.cpu_bf16 (Seq2SeqTrainer then gets bf16=True)."""
    with cpu_bf16(cfg.runtime.cpu_bf16):
        return _measure(cfg, steps, contexts, pairs, rewards)


def _measure(cfg: CoralConfig, steps: int, contexts: int, pairs: int, rewards: tuple[str, ...]) -> dict[str, Any]:
    device = pick_device(cfg.runtime.device)
    tok = load_tokenizer(cfg.tokenizer.name)
    train = retrieval_data(cfg.data, "train", tok)
    data = {"context_ids": train.context_ids, "response_ids": train.response_ids, "pool_index": train.pool_index}
    val = {"context_ids": train.context_ids[:8], "response_ids": train.response_ids[:8]}
    lengths = np.array([len(c) + len(r) + 3 for c, r in zip(train.context_ids, train.response_ids)])
    plan = token_budget_batches(lengths, cfg.train.batch_tokens, cfg.train.max_batch_size, cfg.runtime.seed)
    batch_size = max(1, int(round(np.mean([len(b) for b in plan]))))

    ce_cfg = copy.deepcopy(cfg)
    ce_cfg.objective.loss = "ce"
    ce = train_throughput(ce_cfg, tok, data, val, CrossEntropy, None, steps, device)
    hf = hf_trainer_throughput(copy.deepcopy(cfg), tok, data, steps, batch_size, device)
    reward, reward_source = _training_reward(cfg, device)
    coral_cfg = copy.deepcopy(cfg)
    coral_cfg.objective.loss, coral_cfg.objective.policy = "coral", "mix"
    o = coral_cfg.objective
    coral = train_throughput(coral_cfg, tok, data, val,
                             lambda policy: build_objective(coral_cfg, reward, policy, train.pool_ids, device),
                             reward, steps, device)

    test = encode_pairs(load_pairs(cfg.data, "test"), tok, cfg.data)
    policy = Seq2SeqPolicy(build_generator(cfg.generator, tok).to(device).eval(), tok)
    gen = generation_speed(policy, test["context_ids"][:contexts], cfg.generate, device)

    ctx = [c for c in test["context_ids"][:pairs]]
    resp = [r for r in test["response_ids"][:pairs]]
    scoring = {}
    for name in rewards:
        r_cfg = dataclasses.replace(cfg.retriever, model=name, args={})
        scoring[name] = reward_speed(build_reward(r_cfg, cfg.tokenizer.name), ctx, resp, device)
    if reward_source != FRESH:
        scoring["training_reward"] = {"checkpoint": reward_source, **reward_speed(reward, ctx, resp, device)}

    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "commit": _commit(),
        "coral_version": __version__,
        "machine": {"platform": platform.platform(), "device": describe_device(cfg.runtime.device),
                    "torch": torch.__version__,
                    "autocast": str(autocast_dtype(device) or "fp32").removeprefix("torch.")},
        "sizes": {"generator": dataclasses.asdict(cfg.generator), "batch_tokens": cfg.train.batch_tokens,
                  "mean_examples_per_batch": batch_size, "train_pairs": len(train),
                  "retriever": {k: v for k, v in dataclasses.asdict(cfg.retriever).items() if k != "train"}},
        "ce_training": {"coral_trainer": ce, "hf_seq2seq_trainer": hf,
                        "throughput_ratio": ce["tokens_per_s"] / hf["tokens_per_s"]},
        "coral_mix_step": {"coral": coral, "ce": ce, "step_time_ratio": coral["seconds_per_step"] / ce["seconds_per_step"],
                           "p_plus": o.p_plus, "reward": reward_source},
        "generation": {**gen, "decoding": dataclasses.asdict(cfg.generate)},
        "reward_scoring": scoring,
    }


FRESH = "a fresh retriever of the recipe's [retriever] sizes"


def _training_reward(cfg: CoralConfig, device: torch.device) -> tuple[Any, str]:
    """The reward CORAL trains against: the recipe's objective.reward_checkpoint when it exists
    (e.g. the CPU table's 2-layer retriever), else a fresh retriever of the [retriever] sizes."""
    ckpt = cfg.objective.reward_checkpoint
    if ckpt and Path(ckpt).is_dir():
        return load_reward(ckpt, device).eval().requires_grad_(False), str(ckpt)
    return build_reward(cfg.retriever, cfg.tokenizer.name).to(device).eval().requires_grad_(False), FRESH


def _commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
