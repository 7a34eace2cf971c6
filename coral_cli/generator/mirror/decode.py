"""Mirror's own decoding (its recurrent model has no `generate`): z ~ p(z | c) per row, then the
forward decoder p(y | c, x, z) token by token, greedy, nucleus or beam search.

The authors decode with beam search (beam 10, one best, no length penalty: OpenNMT's defaults,
cszmli/mirror-sigir translate.py) after drawing z from the prior. Here beam search keeps the
`num_beams` best partial responses by summed log-prob; a beam that produced the end token keeps its
score and only extends with padding, and decoding stops once the n best beams of every context have
ended (OpenNMT's stopping rule: ended beams can no longer be overtaken). Sampling draws one z per
returned response, beam search one z per context. `min_new_tokens`, `no_repeat_ngram_size`,
temperature and top-p act as in `coral_cli.generator.decoding.sampling`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    LogitsProcessorList, MinNewTokensLengthLogitsProcessor, NoRepeatNGramLogitsProcessor, TemperatureLogitsWarper,
)

from coral_cli.config.schema import GenerateConfig
from coral_cli.generator.decoding.nucleus import NucleusLogitsProcessor
from coral_cli.generator.decoding.step_logprobs import StepLogprobs
from coral_cli.generator.mirror.model import DecoderState


def _rules(g: GenerateConfig, end_id: int, device: torch.device) -> LogitsProcessorList:
    """Length and n-gram rules over (N, 1 + t) ids whose first column is the start token."""
    rules = LogitsProcessorList([MinNewTokensLengthLogitsProcessor(1, g.min_new_tokens, end_id, device=str(device))])
    if g.no_repeat_ngram_size:
        rules.append(NoRepeatNGramLogitsProcessor(g.no_repeat_ngram_size))
    return rules


@torch.inference_mode()
def sample(model: Any, state: DecoderState, g: GenerateConfig, start_id: int, end_id: int, pad_id: int,
           record: StepLogprobs | None = None) -> torch.Tensor:
    """Greedy (`g.strategy == 'greedy'`) or nucleus decoding of N rows -> (N, L) ids after the
    start token, padded after each row's end token. `record` gets each step's log P(token) under
    the raw distribution, as `StepLogprobs` records it from `generate`."""
    rules = _rules(g, end_id, state.z.device)
    if g.strategy == "nucleus":
        if g.temperature != 1.0:
            rules.append(TemperatureLogitsWarper(g.temperature))
        if g.top_p < 1.0:
            rules.append(NucleusLogitsProcessor(g.top_p))
    n = state.z.shape[0]
    ids = torch.full((n, 1), start_id, dtype=torch.long, device=state.z.device)
    done = torch.zeros(n, dtype=torch.bool, device=ids.device)
    for _ in range(g.max_new_tokens):
        logits, state = model.step(state, ids[:, -1])
        scores = rules(ids, logits.float())
        if g.strategy == "nucleus":
            token = torch.multinomial(scores.softmax(-1), 1)[:, 0]
        else:
            token = scores.argmax(-1)
        token = token.masked_fill(done, pad_id)
        if record is not None:
            record.columns.append(logits.float().log_softmax(-1).gather(1, token[:, None])[:, 0])
        ids = torch.cat([ids, token[:, None]], 1)
        done |= token.eq(end_id)
        if bool(done.all()):
            break
    return ids[:, 1:]


@torch.inference_mode()
def beam_search(model: Any, state: DecoderState, g: GenerateConfig, n: int, start_id: int, end_id: int,
                pad_id: int) -> torch.Tensor:
    """Beam search over B contexts (state rows = contexts) -> (B * n, L) ids, each context's n best
    by summed log-prob, context-major, padded after the end token."""
    b, k = state.z.shape[0], max(g.num_beams, n)
    dev = state.z.device
    state = state.select(torch.arange(b, device=dev).repeat_interleave(k))  # (B * k) rows
    rules = _rules(g, end_id, dev)
    ids = torch.full((b * k, 1), start_id, dtype=torch.long, device=dev)
    scores = torch.full((b, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # one live beam per context at the start
    ended = torch.zeros(b * k, dtype=torch.bool, device=dev)
    for _ in range(g.max_new_tokens):
        logits, state = model.step(state, ids[:, -1])
        logp = rules(ids, logits.float().log_softmax(-1))  # (B * k, V)
        stay = torch.full_like(logp, float("-inf"))
        stay[:, pad_id] = 0.0  # an ended beam only extends with padding, its score unchanged
        logp = torch.where(ended[:, None], stay, logp)
        vocab = logp.shape[1]
        total = (scores.reshape(-1, 1) + logp).view(b, k * vocab)
        scores, flat = total.topk(k, dim=1)  # (B, k), best first
        origin = (flat // vocab + torch.arange(b, device=dev)[:, None] * k).reshape(-1)
        token = (flat % vocab).reshape(-1)
        state, ended = state.select(origin), ended[origin] | token.eq(end_id)
        ids = torch.cat([ids[origin], token[:, None]], 1)
        if bool(ended.view(b, k)[:, :n].all()):
            break
    best = (torch.arange(b, device=dev)[:, None] * k + torch.arange(n, device=dev)[None, :]).reshape(-1)
    return ids[best, 1:]
