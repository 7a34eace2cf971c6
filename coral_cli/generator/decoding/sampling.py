"""Decoding settings -> `model.generate`: KV-cached greedy, beam or nucleus decoding on the
device, shared by on-policy CORAL samples, validation, `coral generate` and chat."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from transformers import LogitsProcessorList, PreTrainedModel

from coral_cli.config.schema import GenerateConfig
from coral_cli.device import decoding_dtype
from coral_cli.generator.decoding.nucleus import NucleusSampler
from coral_cli.generator.decoding.step_logprobs import StepLogprobs


def generate_kwargs(g: GenerateConfig, num_return_sequences: int | None = None, sort_free: bool = True) -> dict:
    """GenerateConfig -> keyword arguments of `model.generate`.

    With `sort_free`, nucleus sampling is `NucleusSampler`: the temperature, then a draw from
    the exact nucleus of HF's sorting `TopPLogitsWarper` found from a top-k (no sort) and sampled
    over those k tokens (not a multinomial over the whole vocabulary), under `generate`'s greedy
    loop; `generate` runs passed processors after its own (min length, n-gram rules), as it runs
    its warpers. The same distribution as HF's sampling, not the same draws. Greedy `generate`
    returns one row per input, so `expand_inputs` repeats each prompt n times first.
    Without `sort_free`, HF's own warpers and sampling, exactly what a user writes (the bench's
    anchor). Both devices use the sampler: on an H200 at paper size the top-k filter alone made
    60.5 responses/s against 38.0 with HF's sorting warper (2026-11-30, docs/RESULTS.md).
    `g.kv_cache = "static"` asks for transformers' fixed-size cache, whose decoding step it
    compiles with CUDA graphs on a GPU (the same tokens and log-probs: tests/test_kv_cache.py)."""
    n = num_return_sequences or g.num_return_sequences
    kw: dict = {"max_new_tokens": g.max_new_tokens, "min_new_tokens": g.min_new_tokens,
                "num_return_sequences": n, "use_cache": True}
    if g.kv_cache == "static":  # transformers then compiles the decoding step on a GPU (its auto-compile)
        kw["cache_implementation"] = "static"
    if g.no_repeat_ngram_size:
        kw["no_repeat_ngram_size"] = g.no_repeat_ngram_size
    if g.strategy == "nucleus" and not sort_free:
        kw.update(do_sample=True, top_p=g.top_p, temperature=g.temperature, top_k=0, num_beams=1)
    elif g.strategy == "nucleus":
        kw.update(do_sample=False, top_p=1.0, temperature=1.0, top_k=None, num_beams=1,
                  logits_processor=LogitsProcessorList([NucleusSampler(g.top_p, g.temperature)]))
    elif g.strategy == "beam":
        kw.update(do_sample=False, num_beams=max(g.num_beams, n))
    else:
        kw.update(do_sample=False, num_beams=1)
        if n > 1:
            raise ValueError("greedy decoding returns one sequence per context; use nucleus or beam")
    return kw


@torch.inference_mode()
def run_generate(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, g: GenerateConfig,
                 num_return_sequences: int | None = None, bf16: bool = True, record: StepLogprobs | None = None,
                 **extra) -> torch.Tensor:
    """`model.generate` under bf16 autocast on CUDA (unless `bf16` is False) -> the raw output
    ids (B * n rows, context-major); the backend cuts the response out of them. A `record`
    collects each generated token's log-prob on the way (not for beam search)."""
    dtype = decoding_dtype(input_ids.device, bf16)
    kw = generate_kwargs(g, num_return_sequences)
    input_ids, attention_mask = expand_inputs(kw, input_ids, attention_mask)
    if record is not None:
        if kw.get("num_beams", 1) > 1:
            raise ValueError("beam search reorders rows between steps: re-score its samples instead")
        kw["logits_processor"] = LogitsProcessorList([record, *kw.get("logits_processor", [])])
    with torch.autocast(input_ids.device.type, dtype=dtype, enabled=dtype is not None), \
            (record.attached(model) if record is not None else nullcontext()):
        # never HF's `synced_gpus` (on by default for an FSDP model: an all-reduce per token): a sharded
        # model generates inside `training.fsdp.gathered`, where one rank can decode alone
        extra.setdefault("synced_gpus", False)
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, **kw, **extra)


def expand_inputs(kw: dict, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy `generate` (our sampler's loop) returns one row per input: for n samples per
    context, repeat each prompt n times (context-major, as `num_return_sequences` orders them)
    and ask for one. Other settings pass through."""
    n = kw["num_return_sequences"]
    if kw.get("do_sample") or kw.get("num_beams", 1) > 1 or n == 1:
        return input_ids, attention_mask
    kw["num_return_sequences"] = 1
    return input_ids.repeat_interleave(n, 0), attention_mask.repeat_interleave(n, 0)


def cut_at_end(ids: torch.Tensor, end_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, L) generated ids -> (mask of the tokens before the first end token, whether one came)."""
    is_end = torch.isin(ids, end_ids)
    return is_end.cumsum(1).eq(0), is_end.any(1)
