"""Generate response token ids on the device: the API the CORAL trainer (on-policy samples),
`coral generate` and chat share. KV-cached decoding through transformers' `generate`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from coral_cli.config.schema import GenerateConfig
from coral_cli.device import autocast_dtype
from coral_cli.tokenizer import wordpiece_text


@dataclass
class Samples:
    """Generated responses, still on the device: `ids` (N, L) with `mask` over the real tokens
    (up to, not including, [SEP]); `ended` (N,) whether [SEP] was produced. N = B * n."""

    ids: torch.Tensor
    mask: torch.Tensor
    ended: torch.Tensor

    def texts(self, tok: PreTrainedTokenizerBase) -> list[str]:
        """Detokenised responses (DailyDialog-style spacing); leaves the device once."""
        rows = self.ids.masked_fill(~self.mask, tok.pad_token_id).tolist()
        return [wordpiece_text(tok, r) for r in rows]


def generate_kwargs(g: GenerateConfig, num_return_sequences: int | None = None) -> dict:
    """GenerateConfig -> keyword arguments of `model.generate`."""
    n = num_return_sequences or g.num_return_sequences
    kw: dict = {"max_new_tokens": g.max_new_tokens, "min_new_tokens": g.min_new_tokens,
                "num_return_sequences": n, "use_cache": True}
    if g.no_repeat_ngram_size:
        kw["no_repeat_ngram_size"] = g.no_repeat_ngram_size
    if g.strategy == "nucleus":
        kw.update(do_sample=True, top_p=g.top_p, temperature=g.temperature, top_k=0, num_beams=1)
    elif g.strategy == "beam":
        kw.update(do_sample=False, num_beams=max(g.num_beams, n))
    else:
        kw.update(do_sample=False, num_beams=1)
        if n > 1:
            raise ValueError("greedy decoding returns one sequence per context; use nucleus or beam")
    return kw


@torch.inference_mode()
def sample_responses(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     g: GenerateConfig, num_return_sequences: int | None = None, bf16: bool = True) -> Samples:
    """Decode responses for encoder inputs (B, S) -> `Samples` of B * n rows (context-major);
    `bf16` = False keeps CUDA decoding in full precision."""
    dtype = autocast_dtype(input_ids.device, bf16)
    with torch.autocast(input_ids.device.type, dtype=dtype, enabled=dtype is not None):
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                             **generate_kwargs(g, num_return_sequences))
    ids = out[:, 1:]  # drop the decoder start token
    eos = model.generation_config.eos_token_id
    is_eos = ids.eq(eos)
    before_eos = is_eos.cumsum(1).eq(0)  # True until the first [SEP]
    return Samples(ids, before_eos, is_eos.any(1))
