"""Decoding settings -> `model.generate`: KV-cached greedy, beam or nucleus decoding on the
device, shared by on-policy CORAL samples, validation, `coral generate` and chat."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from transformers import LogitsProcessorList, PreTrainedModel, TemperatureLogitsWarper

from coral_cli.config.schema import GenerateConfig
from coral_cli.device import autocast_dtype
from coral_cli.generator.nucleus import NucleusLogitsProcessor
from coral_cli.generator.step_logprobs import StepLogprobs


def generate_kwargs(g: GenerateConfig, num_return_sequences: int | None = None, sort_free: bool = True) -> dict:
    """GenerateConfig -> keyword arguments of `model.generate`.

    With `sort_free` (CPUs), nucleus sampling passes temperature and top-p as our own processors
    (`NucleusLogitsProcessor` keeps what HF's sorting `TopPLogitsWarper` keeps, without the sort).
    `generate` runs passed processors after its own and before its warpers, so both go in here,
    temperature first as in HF's warper order; its own temperature and top-p are then off (1.0).
    Without it, HF's own warpers: the same kept set, exactly what a user writes (the bench's
    anchor). Both devices use the prefilter: on an H200 at paper size our generation made 60.5
    responses/s with it and 38.0 with HF's sorting warper (2026-11-30, docs/RESULTS.md)."""
    n = num_return_sequences or g.num_return_sequences
    kw: dict = {"max_new_tokens": g.max_new_tokens, "min_new_tokens": g.min_new_tokens,
                "num_return_sequences": n, "use_cache": True}
    if g.no_repeat_ngram_size:
        kw["no_repeat_ngram_size"] = g.no_repeat_ngram_size
    if g.strategy == "nucleus" and not sort_free:
        kw.update(do_sample=True, top_p=g.top_p, temperature=g.temperature, top_k=0, num_beams=1)
    elif g.strategy == "nucleus":
        warpers = LogitsProcessorList()
        if g.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(g.temperature))
        if g.top_p < 1.0:
            warpers.append(NucleusLogitsProcessor(g.top_p))
        kw.update(do_sample=True, top_p=1.0, temperature=1.0, top_k=0, num_beams=1, logits_processor=warpers)
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
    dtype = autocast_dtype(input_ids.device, bf16)
    kw = generate_kwargs(g, num_return_sequences)
    if record is not None:
        if kw.get("num_beams", 1) > 1:
            raise ValueError("beam search reorders rows between steps: re-score its samples instead")
        kw["logits_processor"] = LogitsProcessorList([record, *kw.get("logits_processor", [])])
    with torch.autocast(input_ids.device.type, dtype=dtype, enabled=dtype is not None), \
            (record.attached(model) if record is not None else nullcontext()):
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, **kw, **extra)


def cut_at_end(ids: torch.Tensor, end_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, L) generated ids -> (mask of the tokens before the first end token, whether one came)."""
    is_end = torch.isin(ids, end_ids)
    return is_end.cumsum(1).eq(0), is_end.any(1)
