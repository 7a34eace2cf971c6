"""The measured stages. Each returns a dict of numbers; ratios between our path and the standard
tool's hold on any machine, absolute numbers only on the machine measured."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from coral_cli.bench.memory import peak_mib, reset_peak
from coral_cli.config.schema import CoralConfig, GenerateConfig
from coral_cli.generation.responses import generate_for_contexts
from coral_cli.generator.model import build_generator
from coral_cli.generator.policy import Policy, Seq2SeqPolicy
from coral_cli.tasks.generator import GeneratorTask
from coral_cli.runs import run_dir
from coral_cli.training.events import StepEnd
from coral_cli.training.loop import Trainer


def train_throughput(cfg: CoralConfig, tok: Any, data: dict, val: dict, make_objective: Callable[[Policy], Any],
                     reward: Any, steps: int, device: torch.device) -> dict[str, Any]:
    """Our trainer for `steps` optimizer steps: tokens/s and seconds/step after the first window."""
    torch.manual_seed(cfg.runtime.seed)
    policy = Seq2SeqPolicy(build_generator(cfg.generator, tok).to(device), tok)
    task = GeneratorTask(policy, make_objective(policy), data, val, cfg, device, reward)
    cfg.train.max_steps, cfg.train.log_every = steps, max(1, steps // 4)
    cfg.train.eval_every, cfg.train.save_epochs = 10**9, 10**9
    marks: list[tuple[float, float]] = []
    reset_peak(device)

    def listen(event: Any) -> None:
        if isinstance(event, StepEnd):
            marks.append((time.perf_counter(), event.stats["tokens_per_s"]))

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(task, cfg.train, run_dir(tmp, "bench"), device, [listen])
        trainer.fit()
    later = marks[1:] or marks
    seconds = [(b[0] - a[0]) / cfg.train.log_every for a, b in zip(marks, marks[1:])] or [float("nan")]
    return {"tokens_per_s": float(np.median([m[1] for m in later])), "seconds_per_step": float(np.median(seconds)),
            "steps": steps, **peak_mib(device)}


def hf_trainer_throughput(cfg: CoralConfig, tok: Any, data: dict, steps: int, batch_size: int,
                          device: torch.device) -> dict[str, Any]:
    """The same model trained by transformers' Seq2SeqTrainer with its usual settings."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, PrinterCallback, Seq2SeqTrainer, Seq2SeqTrainingArguments

    torch.manual_seed(cfg.runtime.seed)
    model = build_generator(cfg.generator, tok)
    rows = {"input_ids": [[tok.cls_token_id, *c, tok.sep_token_id] for c in data["context_ids"]],
            "labels": [[*r, tok.sep_token_id] for r in data["response_ids"]]}
    ds = Dataset.from_dict(rows)
    mean_tokens = float(np.mean([len(a) + len(b) for a, b in zip(rows["input_ids"], rows["labels"])]))
    reset_peak(device)
    with tempfile.TemporaryDirectory() as tmp:
        args = Seq2SeqTrainingArguments(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=cfg.train.lr,
            warmup_steps=min(cfg.train.warmup_steps, steps // 2), logging_strategy="no", save_strategy="no",
            eval_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0,
            bf16=device.type == "cuda" and torch.cuda.is_bf16_supported(), use_cpu=device.type != "cuda",
            seed=cfg.runtime.seed,
        )
        trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=ds,
                                 data_collator=DataCollatorForSeq2Seq(tok, model=model))
        trainer.remove_callback(PrinterCallback)  # it prints to stdout, which carries our JSON
        out = trainer.train()
    seconds = out.metrics["train_runtime"]
    return {"tokens_per_s": steps * batch_size * mean_tokens / seconds, "seconds_per_step": seconds / steps,
            "batch_size": batch_size, "steps": steps, **peak_mib(device)}


def generation_speed(policy: Policy, contexts: list[list[int]], g: GenerateConfig,
                     device: torch.device) -> dict[str, Any]:
    """Our batched, length-sorted generation vs a per-example `model.generate` loop."""
    from coral_cli.generator.sampling import generate_kwargs

    reset_peak(device)
    t0 = time.perf_counter()
    generate_for_contexts(policy, contexts, g)
    batched = time.perf_counter() - t0
    ours_mem = peak_mib(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for c in contexts:
            ids, mask = policy.prompts([c], device)
            policy.model.generate(input_ids=ids, attention_mask=mask, **generate_kwargs(g))
    loop = time.perf_counter() - t0
    return {"contexts": len(contexts), "batched_responses_per_s": len(contexts) / batched,
            "loop_responses_per_s": len(contexts) / loop, "speedup": loop / batched, **ours_mem}


def reward_speed(model: Any, contexts: list[list[int]], responses: list[list[int]], device: torch.device) -> dict[str, Any]:
    """Pairs/s of `score_ids` (length-sorted token-budget batches, inference mode)."""
    model.to(device)
    reset_peak(device)
    model.score_ids(contexts[:8], responses[:8])  # warm-up
    t0 = time.perf_counter()
    model.score_ids(contexts, responses)
    seconds = time.perf_counter() - t0
    return {"pairs": len(contexts), "pairs_per_s": len(contexts) / seconds, **peak_mib(device)}
