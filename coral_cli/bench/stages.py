"""The measured stages. Each returns a dict of numbers; ratios between our path and the standard
tool's hold on any machine, absolute numbers only on the machine measured."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from coral_cli.bench.flops import count_flops, efficiency, per_unit
from coral_cli.bench.memory import peak_mib, reset_peak
from coral_cli.config.schema import CoralConfig, GenerateConfig
from coral_cli.device import autocast_dtype, decoding_dtype
from coral_cli.generation.responses import generate_for_contexts
from coral_cli.generator.bart.model import build_generator
from coral_cli.generator.core.policy import Policy, Seq2SeqPolicy
from coral_cli.runs import run_dir
from coral_cli.tasks.generator import GeneratorTask
from coral_cli.training.events import StepEnd
from coral_cli.training.loop import Trainer


def train_throughput(cfg: CoralConfig, tok: Any, data: dict, val: dict, make_objective: Callable[[Policy], Any],
                     reward: Any, steps: int, device: torch.device, peak_tflops: float) -> dict[str, Any]:
    """Our trainer for `steps` optimizer steps: tokens/s and seconds/step in the steady state (after
    the first log window), and the first window's seconds/step apart (warm-up); then, replayed
    after the run, the FLOPs of the steady-state batches (forward + backward, sampling and reward
    included) and the share of the device's measured matmul peak (`peak_tflops`) they ran at."""
    torch.manual_seed(cfg.runtime.seed)
    policy = Seq2SeqPolicy(build_generator(cfg.generator, tok).to(device), tok)
    task = GeneratorTask(policy, make_objective(policy), data, val, cfg, device, reward)
    cfg.train.max_steps, cfg.train.log_every = steps, log_window(steps)
    cfg.train.eval_every, cfg.train.save_epochs = 10**9, 10**9
    marks: list[float] = []  # the clock at the start, then at each log window's end
    window_tokens_per_s: list[float] = []
    reset_peak(device)

    def listen(event: Any) -> None:
        if isinstance(event, StepEnd):
            marks.append(time.perf_counter())
            window_tokens_per_s.append(event.stats["tokens_per_s"])

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(task, cfg.train, run_dir(tmp, "bench"), device, [listen])
        marks.append(time.perf_counter())
        trainer.fit()
    tokens_per_s = float(np.median(window_tokens_per_s[1:] or window_tokens_per_s))  # steady state
    memory = peak_mib(device)
    window, accum = cfg.train.log_every, cfg.train.grad_accum
    first = window if len(marks) > 2 else 0  # the steady windows' batches, or all when there is one window
    counted, work = _our_work(task, device, cfg.train.bf16, first * accum, (len(marks) - 1) * window * accum)
    seconds = marks[-1] - marks[1 if first else 0]  # the time those batches took
    return {"tokens_per_s": tokens_per_s, **warmup_and_steady(marks, window), "steps": steps,
            **model_flops(policy.model, tokens_per_s, device), **work,
            **efficiency(counted, seconds, peak_tflops), **memory}


def log_window(steps: int) -> int:
    """Steps per log window of a `steps`-step bench run: our trainer logs, and Seq2SeqTrainer's
    clock reads, at the same steps."""
    return max(1, steps // 4)


def backward_at(device: torch.device, bf16: bool, loss_of: Callable[[], torch.Tensor]) -> None:
    """`loss_of()` under the trainer's autocast (`training/loop.py`), then its backward."""
    dtype = autocast_dtype(device, bf16)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        loss = loss_of()
    loss.backward()


def _our_work(task: GeneratorTask, device: torch.device, bf16: bool, first: int,
              stop: int) -> tuple[int | None, dict[str, Any]]:
    """(their total, or None when not counted; FLOPs per token and per example) of batches `first`
    to `stop` of those the trainer ran, replayed at its precision. The replay runs without CORAL's
    r+ reward cache: the timed run met each pair for the first time (a bench is far shorter than an
    epoch), while the replay would find them all cached."""
    cache = getattr(task.objective, "positive_rewards", None)
    if cache is not None:
        task.objective.positive_rewards = None
    try:
        return _counted(task, device, bf16, first, stop)
    finally:
        if cache is not None:
            task.objective.positive_rewards = cache


def _counted(task: GeneratorTask, device: torch.device, bf16: bool, first: int,
             stop: int) -> tuple[int | None, dict[str, Any]]:
    counts, tokens, examples = [], 0, 0
    for epoch, i, spec in _trained_batches(task, first, stop):
        batch = task.collate(spec, epoch, i)
        counts.append(count_flops(lambda: backward_at(device, bf16, lambda: task.loss(batch)[0])))
        tokens, examples = tokens + batch.tokens, examples + len(batch.contexts)
    task.model.zero_grad(set_to_none=True)
    total = sum(counts) if all(isinstance(c, int) for c in counts) else None
    return total, {**per_unit(counts, tokens, "token"), **per_unit(counts, examples, "example")}


def _trained_batches(task: GeneratorTask, first: int, stop: int) -> list[tuple[int, int, Any]]:
    """(epoch, index, spec) of the trainer's batches `first` to `stop`, in its order: a short
    epoch (a small data set) hands over to the next."""
    out: list[tuple[int, int, Any]] = []
    epoch = 0
    while len(out) < stop:
        plan = task.batches(epoch)
        if not len(plan):
            break
        out += [(epoch, i, spec) for i, spec in enumerate(plan)]
        epoch += 1
    return out[first:stop]


def warmup_and_steady(marks: list[float], window: int) -> dict[str, float]:
    """Clock readings (the start, then every `window` steps) -> the first window's seconds per step
    (warm-up: allocator, kernel selection, compiled graphs) and the median of the later windows'
    (steady state), the figure both trainers are compared on."""
    per_step = [(b - a) / window for a, b in zip(marks, marks[1:])] or [float("nan")]
    steady = per_step[1:] or per_step
    return {"seconds_per_step": float(np.median(steady)), "warmup_seconds_per_step": per_step[0]}


# dense bf16 tensor-core peaks (vendor data sheets, no sparsity): MFU is reported where the device is known
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "V100": 125.0}


def model_flops(model: torch.nn.Module, tokens_per_s: float, device: torch.device) -> dict[str, Any]:
    """Training FLOP/s as 6 x parameters x tokens/s (forward 2N, backward 4N per token; attention
    scores left out, the usual MFU convention) and, on a known GPU, its share of the bf16 peak."""
    params = sum(p.numel() for p in model.parameters())
    tflops = 6 * params * tokens_per_s / 1e12
    out: dict[str, Any] = {"params": params, "model_tflops_per_s": tflops}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        if peak:
            out.update(mfu=tflops / peak, peak_bf16_tflops=peak)
    return out


def hf_trainer_throughput(cfg: CoralConfig, tok: Any, data: dict, steps: int, batch_size: int,
                          device: torch.device, peak_tflops: float) -> dict[str, Any]:
    """The same model trained by transformers' Seq2SeqTrainer with its usual settings, timed in the
    same windows as ours: steady state and warm-up apart; then its counted FLOPs on as many batches
    as its steady windows ran, drawn as its sampler draws them (random, padded by its collator)."""
    from datasets import Dataset
    from transformers import (DataCollatorForSeq2Seq, PrinterCallback, Seq2SeqTrainer, Seq2SeqTrainingArguments,
                              TrainerCallback)

    window = log_window(steps)
    marks: list[float] = []

    class WindowClock(TrainerCallback):
        """Reads the clock when training begins and after every `window` optimizer steps, once the
        device has finished the queued work (ours syncs there too: its log window fetches stats)."""

        def on_train_begin(self, args, state, control, **kwargs):
            _sync(device)
            marks.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % window == 0:
                _sync(device)
                marks.append(time.perf_counter())

    torch.manual_seed(cfg.runtime.seed)
    model = build_generator(cfg.generator, tok)
    rows = {"input_ids": [[tok.cls_token_id, *c, tok.sep_token_id] for c in data["context_ids"]],
            "labels": [[*r, tok.sep_token_id] for r in data["response_ids"]]}
    ds = Dataset.from_dict(rows)
    # tokens counted as our trainer counts them (`Policy.ground_truth`: context, response, end token),
    # not its input ids' [CLS] and [SEP] besides: tokens/s then compare like for like
    mean_tokens = float(np.mean([len(c) + len(r) + 1 for c, r in zip(data["context_ids"], data["response_ids"])]))
    reset_peak(device)
    with tempfile.TemporaryDirectory() as tmp:
        args = Seq2SeqTrainingArguments(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=cfg.train.lr,
            warmup_steps=min(cfg.train.warmup_steps, steps // 2), logging_strategy="no", save_strategy="no",
            eval_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0,
            bf16=autocast_dtype(device) is not None, use_cpu=device.type != "cuda",  # our precision
            seed=cfg.runtime.seed,
        )
        trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=ds,
                                 data_collator=DataCollatorForSeq2Seq(tok, model=model), callbacks=[WindowClock()])
        trainer.remove_callback(PrinterCallback)  # it prints to stdout, which carries our JSON
        trainer.train()
    phases = warmup_and_steady(marks, window)
    tokens_per_s = batch_size * mean_tokens / phases["seconds_per_step"]
    memory = peak_mib(device)
    work = _hf_work(model, ds, trainer.data_collator, batch_size, device, cfg.runtime.seed, steps - window)
    return {"tokens_per_s": tokens_per_s, **phases, "batch_size": batch_size, "steps": steps,
            **model_flops(model, tokens_per_s, device), **work,
            **efficiency(work.get("flops_per_step"), phases["seconds_per_step"], peak_tflops), **memory}


def _hf_work(model: Any, ds: Any, collator: Any, batch_size: int, device: torch.device, seed: int,
             batches: int) -> dict[str, float]:
    """Counted FLOPs per step, per token (context + labels, the convention of both tokens/s) and
    per example of the Seq2SeqTrainer side: `batches` random batches through its collator (as its
    sampler draws them), forward + backward at its precision (bf16 autocast where ours has it)."""
    rng = np.random.default_rng(seed)
    flops, tokens, examples = [], 0, 0
    for _ in range(max(1, batches)):
        rows = [ds[int(i)] for i in rng.choice(len(ds), min(batch_size, len(ds)), replace=False)]
        batch = {k: v.to(device) for k, v in collator(rows).items()}
        flops.append(count_flops(lambda: backward_at(device, True, lambda: model(**batch).loss)))
        tokens += sum(len(r["input_ids"]) - 2 + len(r["labels"]) for r in rows)  # as its tokens/s counts them
        examples += len(rows)
    model.zero_grad(set_to_none=True)
    return {**per_unit(flops, len(flops), "step"), **per_unit(flops, tokens, "token"),
            **per_unit(flops, examples, "example")}


ANCHOR_BATCH = 64  # what a user writes: `model.generate` over the contexts in input order, 64 at a time
LOOP_CONTEXTS = 16  # the per-example loop (an extra line, not the anchor) runs on this many contexts


def generation_speed(policy: Policy, contexts: list[list[int]], g: GenerateConfig,
                     device: torch.device) -> dict[str, Any]:
    """Our generation (length-sorted token-budget batches, log-probs recorded while decoding) vs
    the loop a user would write: `model.generate` over batches of 64 in input order, same
    decoding. Both make exactly `max_new_tokens` tokens per response (min = max), so they do equal
    work whatever the model says; the anchor returns no log-probs, ours does."""
    from coral_cli.generator.decoding.sampling import generate_kwargs

    g = dataclasses.replace(g, min_new_tokens=g.max_new_tokens)
    kwargs = generate_kwargs(g, sort_free=False)  # HF's own top-p, as a user writes it
    reset_peak(device)
    _sync(device)
    t0 = time.perf_counter()
    generate_for_contexts(policy, contexts, g)
    _sync(device)
    ours = time.perf_counter() - t0
    ours_mem = peak_mib(device)

    def loop(batch: int, items: list[list[int]]) -> float:
        _sync(device)
        t0 = time.perf_counter()
        with torch.inference_mode(), _autocast(device):
            for i in range(0, len(items), batch):
                ids, mask = policy.prompts(items[i:i + batch], device)
                policy.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        _sync(device)
        return time.perf_counter() - t0

    reset_peak(device)
    batched = loop(ANCHOR_BATCH, contexts)
    anchor_mem = peak_mib(device)
    few = contexts[:LOOP_CONTEXTS]
    single = loop(1, few)
    extra = {}
    if device.type == "cuda" and g.kv_cache == "dynamic":  # what generate.kv_cache = "static" would give
        extra["static_kv_cache"] = _static_cache_speed(policy, contexts, g, device)
    return {
        "contexts": len(contexts), "new_tokens_per_response": g.max_new_tokens,
        "responses_per_s": len(contexts) / ours, **ours_mem, **extra,
        "anchor": {"what": f"model.generate over batches of {ANCHOR_BATCH} in input order, same decoding and "
                           "model, bf16 autocast on CUDA as ours, no log-probs",
                   "responses_per_s": len(contexts) / batched, **anchor_mem},
        "speedup": batched / ours,
        "per_example_loop": {"what": f"model.generate one context at a time, first {len(few)} contexts",
                             "responses_per_s": len(few) / single},
    }


STATIC_CONTEXTS = 256  # the static-cache A/B's contexts: its first pass compiles, once per shape


def _static_cache_speed(policy: Policy, contexts: list[list[int]], g: GenerateConfig,
                        device: torch.device) -> dict[str, Any]:
    """Our generation on the first `STATIC_CONTEXTS` contexts with the dynamic cache, then with
    `kv_cache = "static"` (transformers compiles its decoding step, CUDA graphs): a first static
    pass that compiles (timed apart), then the timed one; or why it failed (a bench line, not
    worth the bench)."""
    contexts = contexts[:STATIC_CONTEXTS]

    def timed(cfg: GenerateConfig) -> float:
        _sync(device)
        t0 = time.perf_counter()
        generate_for_contexts(policy, contexts, cfg)
        _sync(device)
        return time.perf_counter() - t0

    dynamic = timed(g)
    try:
        static = dataclasses.replace(g, kv_cache="static")
        warmup = timed(static)  # compilation and graph capture
        steady = timed(static)
    except Exception as exc:  # noqa: BLE001 - reported in the JSON, the other stages stand
        return {"contexts": len(contexts), "error": f"{type(exc).__name__}: {exc}"[:500]}
    return {"contexts": len(contexts), "dynamic_responses_per_s": len(contexts) / dynamic,
            "responses_per_s": len(contexts) / steady, "warmup_seconds": warmup, "static_over_dynamic": dynamic / steady}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device) -> Any:
    """The same autocast our generation runs under (bf16 on CUDA, fp32 on a CPU)."""
    dtype = decoding_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def reward_speed(model: Any, contexts: list[list[int]], responses: list[list[int]], device: torch.device,
                 peak_tflops: float) -> dict[str, Any]:
    """Pairs/s of `score_ids` (length-sorted token-budget batches, inference mode), then its
    counted FLOPs per pair and the share of `peak_tflops` (the matmul peak at its precision)."""
    model.to(device)
    reset_peak(device)
    model.score_ids(contexts[:8], responses[:8])  # warm-up
    t0 = time.perf_counter()
    model.score_ids(contexts, responses)
    seconds = time.perf_counter() - t0
    memory = peak_mib(device)
    counted = count_flops(lambda: model.score_ids(contexts, responses))
    return {"pairs": len(contexts), "pairs_per_s": len(contexts) / seconds, **per_unit([counted], len(contexts), "pair"),
            **efficiency(counted if isinstance(counted, int) else None, seconds, peak_tflops), **memory}
