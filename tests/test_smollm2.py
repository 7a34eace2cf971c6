"""The real bundled model: SmolLM2-135M-Instruct loads offline, replies in English to DailyDialog
contexts, and takes one LoRA CORAL step (slow: the session's smollm2_cache converts the GGUF once, ~20 s)."""

import re

import numpy as np
import pytest
import torch

from coral_cli.config import resolve
from coral_cli.config.schema import GenerateConfig
from coral_cli.generator.core.batch import TrainBatch
from coral_cli.rewards.callable import CallableReward
from coral_cli.tasks.train import build_objective, build_policy

CONTEXTS = [["Say , Jim , how about going for a few beers after dinner ?"],
            ["Can you do push-ups ?", "Of course I can . It's a piece of cake ! Believe it or not , I can do 30 push-ups a minute ."]]
REFERENCES = ["You know that is tempting but is really not good for our fitness .", "Really ? I think that's impossible !"]


@pytest.mark.slow
def test_bundled_smollm2_replies_in_english_and_takes_a_lora_coral_step(smollm2_cache, monkeypatch):
    monkeypatch.setenv("CORAL_CACHE_DIR", str(smollm2_cache))  # converted once for the session
    cfg = resolve(None, {"generator.pretrained": "smollm2", "generator.lora.enabled": True, "objective.loss": "coral",
                         "objective.p_plus": 0.5, "objective.policy": "mix", "objective.sample_max_new_tokens": 12,
                         "objective.kl_coef": 0.05, "runtime.seed": 0})
    torch.manual_seed(0)
    policy, base = build_policy(cfg, torch.device("cpu"))
    assert base["spec"] == "smollm2" and policy.format == "chat"
    ctx = policy.context_ids(CONTEXTS, 128)
    assert "SmolLM" not in policy.tokenizer.decode(ctx[0])  # the template's default persona stays out
    ids, mask = policy.prompts(ctx, "cpu")
    replies = policy.texts(policy.sample(policy.model, ids, mask, GenerateConfig(strategy="greedy", max_new_tokens=16)))
    assert all(len(re.findall(r"[A-Za-z]{2,}", r)) >= 3 for r in replies), replies  # English words, not noise
    objective = build_objective(cfg, CallableReward(lambda c, r: [0.9 if "?" in x else 0.1 for x in r]), policy,
                                [policy.response_ids(["Sure ."], 8)[0]], torch.device("cpu"))
    resp = policy.response_ids(REFERENCES, 32)
    teacher, ids, mask = policy.ground_truth(ctx, resp, "cpu")
    batch = TrainBatch(teacher, ids, mask, ctx, resp, np.array([-1, -1]), np.random.default_rng(0), CONTEXTS)
    trainable = {n: p for n, p in policy.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-3)
    loss, stats = objective(policy.model, batch)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and stats["kl"].item() == pytest.approx(0.0, abs=1e-4)  # adapters start as a no-op
    assert any(not torch.equal(before[n], p) for n, p in trainable.items())
