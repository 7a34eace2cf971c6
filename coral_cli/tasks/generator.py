"""The `Task` the shared trainer runs for the generator: length-bucketed token-budget batches of
(context, response) pairs, a pluggable objective (CE or CORAL), validation, HF checkpoints.

Validation: token-level CE loss of the references; with a reward model also validation-R3, the
mean R3 of responses generated for the validation contexts, which drives early stopping and
best/ for CORAL as in the paper (§4.1), and the collapse alarms on those responses (a policy can
climb the reward while every reply turns into the same string).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coral_cli.config.schema import CoralConfig
from coral_cli.generator.core.batch import IGNORE, TrainBatch
from coral_cli.generator.core.policy import Policy
from coral_cli.generator.loading import load_policy_weights, save_policy
from coral_cli.metrics.collapse import check_collapse
from coral_cli.objectives.length_debias import LengthDebias
from coral_cli.objectives.positive_rewards import PositiveRewardCache
from coral_cli.objectives.reward_input import score_candidates
from coral_cli.rewards.base import RewardModel
from coral_cli.training.batching import token_budget_batches

Objective = Callable[[Any, TrainBatch], tuple[torch.Tensor, dict[str, Any]]]
SHOWN_SAMPLES = 3


class GeneratorTask:
    """Trains `policy.model` with `objective`; early stopping on val_R3 (CORAL) or val_loss (CE).

    `train` and `val` hold per pair `context_ids`, `response_ids` (the policy's format) and
    `texts` (the context's utterances, for rewards that read text); `train` also `pool_index`.
    """

    def __init__(self, policy: Policy, objective: Objective, train: dict[str, Any], val: dict[str, Any],
                 cfg: CoralConfig, device: torch.device, reward: Any = None, base: dict[str, Any] | None = None) -> None:
        """`base` ({spec, identity}) names the pretrained LM a causal policy was loaded from."""
        self.policy, self.objective, self.cfg, self.device, self.reward = policy, objective, cfg, device, reward
        self.base = base
        self.model = policy.model
        policy.pad_multiple = cfg.train.pad_to_multiple
        self.forward_model: torch.nn.Module = self.model  # the DDP wrapper when distributed
        self.ctx, self.resp, self.texts = train["context_ids"], train["response_ids"], train.get("texts")
        self.pool_index = np.asarray(train.get("pool_index", np.full(len(self.ctx), -1)))
        self.lengths = np.array([len(c) + len(r) + 3 for c, r in zip(self.ctx, self.resp)])
        # an encoder-decoder pads contexts and responses apart: batches group responses of like length too
        self.response_lengths = np.array([len(r) for r in self.resp]) if policy.kind != "causal" else None
        n = cfg.generator.eval_pairs or len(val["context_ids"])
        self.val = {k: v[:n] for k, v in val.items()}
        self.val_references = [policy.text(r) for r in self.val["response_ids"]]  # for the collapse alarms
        coral = cfg.objective.loss == "coral"
        o = cfg.objective  # whether a step samples the policy itself (under FSDP it then stays gathered)
        self.generates_in_step = coral and o.policy == "mix" and o.random_ratio < 1
        self.metric, self.higher_is_better = ("val_R3", True) if coral else ("val_loss", False)
        if coral and isinstance(reward, RewardModel) and not reward.training:  # frozen, deterministic f_R
            self.objective.positive_rewards = PositiveRewardCache(len(self.ctx), device)

    def batches(self, epoch: int) -> list[np.ndarray]:
        t = self.cfg.train
        return token_budget_batches(self.lengths, t.batch_tokens, t.max_batch_size, self.cfg.runtime.seed, epoch,
                                    self.response_lengths)

    def collate(self, spec: np.ndarray, epoch: int, index: int) -> TrainBatch:
        ctx, resp = [self.ctx[i] for i in spec], [self.resp[i] for i in spec]
        # `index` counts batches over all ranks: each rank draws its own p+ pattern and negatives
        rng = np.random.default_rng([self.cfg.runtime.seed, epoch, index, 11])
        teacher, ids, mask = self.policy.ground_truth(ctx, resp, self.device)
        texts = [self.texts[i] for i in spec] if self.texts is not None else None
        return TrainBatch(teacher, ids, mask, ctx, resp, self.pool_index[spec], rng, texts, np.asarray(spec))

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.objective(self.forward_model, batch)

    def evaluate(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {"val_loss": validation_loss(self, self.val["context_ids"], self.val["response_ids"])}
        if self.reward is not None:
            metrics.update(validation_reward(self))
        return metrics

    def save_model(self, folder: Path) -> None:
        save_policy(self.policy, folder, self.cfg.data, self.base)

    def load_model(self, folder: Path) -> None:
        load_policy_weights(self.policy, folder)

    def extra_state(self) -> dict[str, torch.Tensor]:
        ema = getattr(self.objective, "ema", None)
        out = {"objective.ema": ema.detach().reshape(1).cpu(),
               "objective.ema_batches": torch.tensor([self.objective.ema_batches])} if ema is not None else {}
        debias = getattr(self.objective, "length_debias", None)
        if debias is not None:  # a resume trains on the fit of the run's start
            out = {**out, **debias.tensors()}
        seen = getattr(self.objective, "batches_seen", None)  # Mirror's KL annealing
        if seen is not None:
            out = {**out, "objective.batches_seen": torch.tensor([seen])}
        cache = getattr(self.objective, "positive_rewards", None)  # a resume reads the r+ rewards known so far
        return {**out, **cache.tensors()} if cache is not None else out

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if "objective.ema" in tensors:
            self.objective.ema = tensors["objective.ema"].to(self.device)[0]
            # a checkpoint from before the bias correction: its EMA is long past its start
            self.objective.ema_batches = int(tensors.get("objective.ema_batches", torch.tensor([10 ** 6]))[0])
        if LengthDebias.from_tensors(tensors) is not None:
            self.objective.length_debias = LengthDebias.from_tensors(tensors)
        if "objective.batches_seen" in tensors:
            self.objective.batches_seen = int(tensors["objective.batches_seen"][0])
        if getattr(self.objective, "positive_rewards", None) is not None:
            self.objective.positive_rewards.load(tensors)


@torch.no_grad()
def validation_loss(task: GeneratorTask, ctx: list, resp: list) -> float:
    """Token-level NLL of the references (summed, then divided by the number of tokens)."""
    t = task.cfg.train
    lengths = np.array([len(c) + len(r) + 3 for c, r in zip(ctx, resp)])
    total = torch.zeros((), device=task.device)
    count = torch.zeros((), device=task.device)
    for idx in token_budget_batches(lengths, t.batch_tokens, t.max_batch_size, seed=None):
        batch, _, _ = task.policy.ground_truth([ctx[i] for i in idx], [resp[i] for i in idx], task.device)
        total -= task.policy.logprobs(task.model, batch).sum()
        count += batch.labels.ne(IGNORE).sum()
    return float(total / count.clamp(min=1))


def validation_reward(task: GeneratorTask) -> dict[str, Any]:
    """validation-R3: generate for the validation contexts, mean f_R - m (paper §4.1).

    Decoding runs under its own seed (`generate.seed`) inside a forked RNG, so `best/` does not
    follow sampling noise and evaluating never changes what training draws next."""
    devices = [task.device] if task.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(task.cfg.generate.seed)
        return _validation_reward(task)


def _validation_reward(task: GeneratorTask) -> dict[str, Any]:
    cfg, policy, g = task.cfg, task.policy, task.cfg.generate
    ctx, texts = task.val["context_ids"], task.val.get("texts")
    lengths = np.array([len(c) + 2 + g.max_new_tokens for c in ctx])
    scores, shown, replies = [], [], [""] * len(ctx)
    for idx in token_budget_batches(lengths, g.batch_tokens, 1024, seed=None):
        batch_ctx = [ctx[i] for i in idx]
        batch_texts = [texts[i] for i in idx] if texts is not None else None
        ids, mask = policy.prompts(batch_ctx, task.device)
        samples = policy.sample(task.model, ids, mask, g, num_return_sequences=1, bf16=cfg.train.bf16)
        scores.append(score_candidates(task.reward, policy, batch_ctx, batch_texts, samples))
        batch_replies = policy.texts(samples)
        for i, r in zip(idx, batch_replies):
            replies[i] = r
        if len(shown) < SHOWN_SAMPLES:
            shown += [{"context": batch_texts[j][-1] if batch_texts else policy.text(batch_ctx[j][-60:]), "response": r}
                      for j, r in enumerate(batch_replies[: SHOWN_SAMPLES - len(shown)])]
    f = torch.cat(scores)
    stats, warnings = check_collapse(replies, task.val_references)
    return {"val_R3": float(f.mean()) - cfg.objective.margin, "val_f_R": float(f.mean()), "samples": shown,
            "val_top_reply_share": stats["top_reply_share"], "val_Dist-1": stats["Dist-1"],
            "val_repeat_run_share": stats["repeat_run_share"], "collapse": warnings}
