"""Generate for many contexts: length-sorted token-budget batches, outputs back in input order,
each response with its mean token log-probability under the model: recorded while decoding
(`StepLogprobs`, equal to a teacher-forced re-score to ~1e-5), or re-scored where it cannot be."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from coral_cli.config.schema import GenerateConfig
from coral_cli.device import decoding_dtype
from coral_cli.generator.core.batch import IGNORE, Responses
from coral_cli.generator.core.logprobs import scored_mean
from coral_cli.generator.core.policy import Policy
from coral_cli.generator.decoding.step_logprobs import StepLogprobs
from coral_cli.training.batching import token_budget_batches


def generate_for_contexts(policy: Policy, context_ids: Sequence[Sequence[int]], g: GenerateConfig,
                          on_batch: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """For each context (the policy's ids, already truncated): {'responses': [...], 'logprobs': [...]}
    in input order.

    Log-probs are recorded while decoding, except for beam search (beams reorder rows between
    steps), under bf16 autocast (decoding logits are bf16; the re-score runs in fp32) and for a
    static KV cache on CUDA (a compiled step): those take the teacher-forced re-score, a second
    forward pass."""
    device = policy.device
    n = g.num_return_sequences
    width = n * max(1, g.num_beams if g.strategy == "beam" else 1)
    lengths = np.array([(len(c) + 2 + g.max_new_tokens) * width for c in context_ids])
    torch.manual_seed(g.seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(g.seed)
    results: list[dict[str, Any]] = [{} for _ in context_ids]
    policy.model.eval()
    # a static cache on CUDA runs transformers' compiled step under CUDA graphs, whose output buffers are
    # reused between steps: the recorder's hook would read them inside the graph, so that path re-scores
    compiled = g.kv_cache == "static" and device.type == "cuda"
    record = g.strategy != "beam" and decoding_dtype(device) is None and not compiled
    for idx in token_budget_batches(lengths, g.batch_tokens, 1024, seed=None):
        ids, mask = policy.prompts([context_ids[i] for i in idx], device)
        rec = StepLogprobs() if record else None
        samples = policy.sample(policy.model, ids, mask, g, record=rec)
        texts = policy.texts(samples)
        if rec is not None:
            mean = scored_mean(rec.token_logprobs(samples.ids), samples).tolist()
        else:
            logp, scored = score_samples(policy, ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0), samples)
            mean = (logp.sum(1) / scored.sum(1).clamp(min=1)).tolist()
        for j, i in enumerate(idx):
            sl = slice(j * n, (j + 1) * n)
            results[i] = {"responses": texts[sl], "logprobs": [round(x, 5) for x in mean[sl]]}
        if on_batch:
            on_batch(len(idx))
    return results


@torch.inference_mode()
def score_samples(policy: Policy, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                  samples: Responses) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced re-score of generated samples (one prompt row per sample row) -> ((N, T)
    token log-probs, 0 where nothing is scored; (N, T) mask of the scored positions: the response
    tokens in order, then the end token where the model produced it, not for responses cut at
    max_new_tokens)."""
    batch = policy.teacher(prompt_ids, prompt_mask, samples)
    return policy.logprobs(policy.model, batch), batch.labels.ne(IGNORE)


def rerank(results: list[dict[str, Any]], contexts: Sequence[Sequence[str]], reward: Any,
           name: str = "") -> list[dict[str, Any]]:
    """Score every candidate with the reward's text API f_R(c, r) and mark the best one per
    context (the paper's DialogRPT row: DialoGPT candidates reranked by DialogRPT).

    Adds 'scores' (one per response, in order), 'best' (the index of the argmax; the first on
    ties) and 'reranked_by' (`name`) to each result; responses and logprobs keep their order.
    """
    flat_ctx = [list(c) for c, res in zip(contexts, results) for _ in res["responses"]]
    flat_resp = [r for res in results for r in res["responses"]]
    scores = reward.score(flat_ctx, flat_resp).tolist() if flat_resp else []  # (sum n,)
    out, k = [], 0
    for res in results:
        s = scores[k:k + len(res["responses"])]
        k += len(s)
        best = max(range(len(s)), key=s.__getitem__) if s else 0
        out.append({**res, "scores": [round(x, 5) for x in s], "best": best, "reranked_by": name})
    return out
