"""Generate for many contexts: length-sorted token-budget batches, outputs back in input order,
each response with its mean token log-probability under the model (teacher-forced re-score)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from coral_cli.config.schema import GenerateConfig
from coral_cli.generation.sampling import Samples, sample_responses
from coral_cli.generator.batch import IGNORE, encoder_inputs, seq2seq_batch
from coral_cli.generator.logprobs import token_logprobs
from coral_cli.training.batching import token_budget_batches


def generate_for_contexts(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, context_ids: Sequence[Sequence[int]],
    g: GenerateConfig, on_batch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """For each context (ids, already truncated): {'responses': [...], 'logprobs': [...]} in input order."""
    device = next(model.parameters()).device
    n = g.num_return_sequences
    width = n * max(1, g.num_beams if g.strategy == "beam" else 1)
    lengths = np.array([(len(c) + 2 + g.max_new_tokens) * width for c in context_ids])
    torch.manual_seed(g.seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(g.seed)
    results: list[dict[str, Any]] = [{} for _ in context_ids]
    model.eval()
    for idx in token_budget_batches(lengths, g.batch_tokens, 1024, seed=None):
        ctx = [context_ids[i] for i in idx]
        ids, mask = encoder_inputs(ctx, tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, device)
        samples = sample_responses(model, ids, mask, g)
        texts = samples.texts(tok)
        _, logp, scored = score_samples(model, tok, [c for c in ctx for _ in range(n)], samples)
        mean = (logp.sum(1) / scored.clamp(min=1)).tolist()
        for j, i in enumerate(idx):
            sl = slice(j * n, (j + 1) * n)
            results[i] = {"responses": texts[sl], "logprobs": [round(x, 5) for x in mean[sl]]}
        if on_batch:
            on_batch(len(idx))
    return results


@torch.inference_mode()
def score_samples(model: PreTrainedModel, tok: PreTrainedTokenizerBase, contexts: Sequence[Sequence[int]],
                  samples: Samples) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
    """Teacher-forced re-score of generated samples (one context per sample row) ->
    (response ids, (N, T) token log-probs, 0 past the end; (N,) scored tokens). [SEP] is scored
    only where the model produced it (not for responses cut at max_new_tokens)."""
    rows = samples.ids.masked_fill(~samples.mask, tok.pad_token_id).tolist()
    responses = [[t for t in r if t != tok.pad_token_id] for r in rows]
    batch = seq2seq_batch(contexts, responses, tok.cls_token_id, tok.sep_token_id, tok.pad_token_id,
                          samples.ids.device)
    cut = ~samples.ended
    last = batch.labels.ne(IGNORE).sum(1) - 1
    batch.labels[cut, last[cut]] = IGNORE
    return responses, token_logprobs(model, batch), batch.labels.ne(IGNORE).sum(1)
