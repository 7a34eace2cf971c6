"""One benchmark run: every stage at the sizes of the given config, on the same data.

- CE training throughput of our trainer vs transformers' Seq2SeqTrainer (same model, same pairs,
  its batch size = our mean examples per token-budget batch);
- a CORAL mix-policy step vs a CE step (the cost of sampling + reward in the loop);
- our generation vs the loop a user writes: `model.generate` over batches of 64 in input order
  (responses/s, equal outputs lengths; a per-example loop as an extra line);
- reward scoring pairs/s of each retriever; peak memory of each stage.

With a pretrained causal LM (`generator.pretrained`): a CORAL step vs a step of trl's GRPOTrainer
on that model (`trl_compare`), and reward scoring.
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
from coral_cli.bench.flops import MatmulPeaks
from coral_cli.bench.profile import profile_steps
from coral_cli.bench.stages import generation_speed, hf_trainer_throughput, reward_speed, train_throughput
from coral_cli.bench.trl_compare import compare_grpo, require_trl
from coral_cli.config.schema import CoralConfig
from coral_cli.data.encode import encode_pairs
from coral_cli.data.sources import load_pairs
from coral_cli.device import autocast_dtype, cpu_bf16, describe_device, pick_device
from coral_cli.generator.bart.model import build_generator
from coral_cli.generator.core.policy import Seq2SeqPolicy
from coral_cli.objectives.cross_entropy import CrossEntropy
from coral_cli.rewards.checkpoint import build_reward, load_reward
from coral_cli.rewards.retrieval_data import retrieval_data
from coral_cli.tasks.train import build_objective
from coral_cli.tokenizer import load_tokenizer
from coral_cli.training.batching import token_budget_batches


def run_bench(cfg: CoralConfig, steps: int, contexts: int, pairs: int, rewards: tuple[str, ...],
              samples: int = 4, profile: bool = False) -> dict[str, Any]:
    """Every measurement, ours and the anchors', at one precision: bf16 autocast on CUDA, and on a
    CPU with runtime.cpu_bf16 (Seq2SeqTrainer and GRPOTrainer then get bf16=True).

    A recipe with a pretrained LM (`generator.pretrained`) is benched as that model: a CORAL step
    vs trl's GRPOTrainer step with `samples` completions per prompt, and reward scoring. The CE,
    CORAL-vs-CE and generation stages time the paper's from-scratch BART, a model such a recipe
    never trains, so they are left out (named under "skipped"). `profile` adds torch.profiler
    tables of one CE step and one decoding batch (the paper's BART only)."""
    if cfg.generator.pretrained:
        require_trl()  # before any slow work
    with cpu_bf16(cfg.runtime.cpu_bf16):
        if cfg.generator.pretrained:
            return _measure_pretrained(cfg, steps, pairs, rewards, samples)
        return _measure(cfg, steps, contexts, pairs, rewards, profile)


def _measure_pretrained(cfg: CoralConfig, steps: int, pairs: int, rewards: tuple[str, ...],
                        samples: int) -> dict[str, Any]:
    device = pick_device(cfg.runtime.device)
    reward, reward_source = _training_reward(cfg, device)
    reward.bf16 = cfg.train.bf16  # as CORAL training scores (load_training_reward)
    name = f"{type(reward).__name__} " + (f"from {reward_source}" if reward_source != FRESH else "(fresh, untrained)")
    grpo = compare_grpo(cfg, reward, name, steps, samples, device)
    peaks = MatmulPeaks(device)
    scoring = _scoring(cfg, reward, reward_source, pairs, rewards, device, peaks)
    skipped = "times the paper's from-scratch BART, not the recipe's pretrained LM"
    return {
        **_header(cfg, device),
        "sizes": {"generator": dataclasses.asdict(cfg.generator),
                  "objective": {k: getattr(cfg.objective, k) for k in ("sample_max_new_tokens", "sample_top_p",
                                                                      "sample_temperature", "kl_coef")},
                  "retriever": {k: v for k, v in dataclasses.asdict(cfg.retriever).items() if k != "train"}},
        "trl_grpo": {**grpo, "reward": reward_source},
        "reward_scoring": scoring,
        "matmul_peak_tflops": peaks.table(),
        "skipped": {"ce_training": skipped, "coral_mix_step": skipped, "generation": skipped},
    }


def _measure(cfg: CoralConfig, steps: int, contexts: int, pairs: int, rewards: tuple[str, ...],
             profile: bool = False) -> dict[str, Any]:
    device = pick_device(cfg.runtime.device)
    tok = load_tokenizer(cfg.tokenizer.name)
    train = retrieval_data(cfg.data, "train", tok)
    data = {"context_ids": train.context_ids, "response_ids": train.response_ids, "pool_index": train.pool_index}
    val = {"context_ids": train.context_ids[:8], "response_ids": train.response_ids[:8]}
    lengths = np.array([len(c) + len(r) + 3 for c, r in zip(train.context_ids, train.response_ids)])
    plan = token_budget_batches(lengths, cfg.train.batch_tokens, cfg.train.max_batch_size, cfg.runtime.seed,
                                response_lengths=np.array([len(r) for r in train.response_ids]))  # as GeneratorTask
    batch_size = max(1, int(round(np.mean([len(b) for b in plan]))))

    peaks = MatmulPeaks(device)
    train_peak = peaks(autocast_dtype(device, cfg.train.bf16))  # measured before the trainers, on an idle device
    ce_cfg = copy.deepcopy(cfg)
    ce_cfg.objective.loss = "ce"
    ce = train_throughput(ce_cfg, tok, data, val, CrossEntropy, None, steps, device, train_peak)
    hf = hf_trainer_throughput(copy.deepcopy(cfg), tok, data, steps, batch_size, device, train_peak)
    reward, reward_source = _training_reward(cfg, device)
    reward.bf16 = cfg.train.bf16  # as CORAL training scores (load_training_reward)
    coral_cfg = copy.deepcopy(cfg)
    coral_cfg.objective.loss, coral_cfg.objective.policy = "coral", "mix"
    o = coral_cfg.objective
    coral = train_throughput(coral_cfg, tok, data, val,
                             lambda policy: build_objective(coral_cfg, reward, policy, train.pool_ids, device),
                             reward, steps, device, train_peak)

    test = encode_pairs(load_pairs(cfg.data, "test"), tok, cfg.data)
    policy = Seq2SeqPolicy(build_generator(cfg.generator, tok).to(device).eval(), tok)
    gen = generation_speed(policy, test["context_ids"][:contexts], cfg.generate, device)

    scoring = _scoring(cfg, reward, reward_source, pairs, rewards, device, peaks, test)
    extra = {"profile": profile_steps(copy.deepcopy(cfg), tok, data, val, test["context_ids"][:contexts], device)} \
        if profile else {}

    return {
        **_header(cfg, device),
        "sizes": {"generator": dataclasses.asdict(cfg.generator), "batch_tokens": cfg.train.batch_tokens,
                  "mean_examples_per_batch": batch_size, "train_pairs": len(train),
                  "retriever": {k: v for k, v in dataclasses.asdict(cfg.retriever).items() if k != "train"}},
        "matmul_peak_tflops": peaks.table(),
        "ce_training": {"coral_trainer": ce, "hf_seq2seq_trainer": hf,
                        "throughput_ratio": ce["tokens_per_s"] / hf["tokens_per_s"],
                        # the throughput ratio both trainers would have at equal share of the peak
                        "arithmetic_ratio": _ratio(hf, ce, "flops_per_example")},
        "coral_mix_step": {"coral": coral, "ce": ce, "step_time_ratio": coral["seconds_per_step"] / ce["seconds_per_step"],
                           # the step-time ratio at equal share of the peak (decoding is memory-bound: more)
                           "arithmetic_ratio": _ratio(coral, ce, "flops_per_token"),
                           "p_plus": o.p_plus, "reward": reward_source},
        "generation": {**gen, "decoding": dataclasses.asdict(cfg.generate)},
        "reward_scoring": scoring,
        **extra,
    }


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    """a[key] / b[key], None where either count failed (the sides then say why)."""
    return a[key] / b[key] if key in a and key in b else None


FRESH = "a fresh retriever of the recipe's [retriever] sizes"


def _header(cfg: CoralConfig, device: torch.device) -> dict[str, Any]:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "commit": _commit(),
        "coral_version": __version__,
        "machine": {"platform": platform.platform(), "device": describe_device(cfg.runtime.device),
                    "torch": torch.__version__,
                    "autocast": str(autocast_dtype(device) or "fp32").removeprefix("torch.")},
    }


def _scoring(cfg: CoralConfig, reward: Any, reward_source: str, pairs: int, rewards: tuple[str, ...],
             device: torch.device, peaks: MatmulPeaks, test: Any = None) -> dict[str, Any]:
    """Pairs/s of each named retriever (fresh, the recipe's sizes) and of the training reward, each
    against the matmul peak at the precision it scores in."""
    if test is None:
        test = encode_pairs(load_pairs(cfg.data, "test"), load_tokenizer(cfg.tokenizer.name), cfg.data)
    ctx, resp = list(test["context_ids"][:pairs]), list(test["response_ids"][:pairs])
    scoring = {}
    for name in rewards:
        r_cfg = dataclasses.replace(cfg.retriever, model=name, args={})
        model = build_reward(r_cfg, cfg.tokenizer.name)
        scoring[name] = reward_speed(model, ctx, resp, device, peaks(autocast_dtype(device, model.bf16)))
    if reward_source != FRESH:
        peak = peaks(autocast_dtype(device, reward.bf16))
        scoring["training_reward"] = {"checkpoint": reward_source, **reward_speed(reward, ctx, resp, device, peak)}
    return scoring


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
