"""`coral bench --profile`: where one training step's and one decoding batch's time goes, as
torch.profiler tables (the top ops by device time on CUDA, by CPU time on a CPU)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from coral_cli.config.schema import CoralConfig
from coral_cli.bench.stages import backward_at
from coral_cli.generation.responses import generate_for_contexts
from coral_cli.generator.bart.model import build_generator
from coral_cli.generator.core.policy import Seq2SeqPolicy
from coral_cli.objectives.cross_entropy import CrossEntropy
from coral_cli.tasks.generator import GeneratorTask

WARMUP_STEPS = 2  # kernel selection and the allocator settle before the profiled step


def profile_steps(cfg: CoralConfig, tok: Any, data: dict, val: dict, contexts: list[list[int]],
                  device: torch.device, top: int = 15) -> dict[str, Any]:
    """Profiler tables of one CE step (forward, backward, AdamW; after `WARMUP_STEPS` unprofiled
    ones, on the bench's first batch) and of one generation batch of `contexts`."""
    torch.manual_seed(cfg.runtime.seed)
    policy = Seq2SeqPolicy(build_generator(cfg.generator, tok).to(device), tok)
    task = GeneratorTask(policy, CrossEntropy(policy), data, val, cfg, device)
    batch = task.collate(task.batches(0)[0], 0, 0)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=cfg.train.lr)

    def step() -> None:
        backward_at(device, cfg.train.bf16, lambda: task.loss(batch)[0])  # the trainer's precision
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    policy.model.train()
    for _ in range(WARMUP_STEPS):
        step()
    ce = _profiled(step, device, top)
    policy.model.eval()
    g = dataclasses.replace(cfg.generate, min_new_tokens=cfg.generate.max_new_tokens)  # equal work per reply
    generate_for_contexts(policy, contexts[:8], g)  # warm-up
    decode = _profiled(lambda: generate_for_contexts(policy, contexts, g), device, top)
    return {"ce_step": {"examples": len(batch.contexts), **ce},
            "decode": {"contexts": len(contexts), "new_tokens": g.max_new_tokens, **decode}}


def _profiled(fn: Any, device: torch.device, top: int) -> dict[str, Any]:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort_by = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    with profile(activities=activities) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return {"sorted_by": sort_by, "table": prof.key_averages().table(sort_by=sort_by, row_limit=top)}
