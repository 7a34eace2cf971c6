"""The retriever `Task` (paper §4.2): positives are the dataset's pairs, negatives k random pool
utterances per positive (never the true response), binary cross-entropy (+ the plugin's
auxiliary loss, InfoNCE for dmi). Early stopping and best/ follow validation R10@1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from coral_cli.config.schema import CoralConfig
from coral_cli.rewards.base import RewardModel
from coral_cli.rewards.checkpoint import load_weights, save_reward
from coral_cli.rewards.evaluate import evaluate_pool
from coral_cli.rewards.negatives import sample_negatives
from coral_cli.rewards.packing import pad_ids
from coral_cli.rewards.retrieval_data import RetrievalData
from coral_cli.training.batching import token_budget_batches


class TrainingOutputs(torch.nn.Module):
    """`model.training_outputs` as a module's forward, so a DDP wrapper (which only sees
    `forward`) averages the gradients of retriever training across ranks."""

    def __init__(self, model: RewardModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        return self.model.training_outputs(*args)


class RetrieverTask:
    """The `Task` the shared trainer runs for a reward model."""

    metric = "R10@1"
    higher_is_better = True

    def __init__(self, model: RewardModel, train: RetrievalData, val: RetrievalData, cfg: CoralConfig,
                 device: torch.device) -> None:
        self.model, self.train, self.cfg, self.device = model, train, cfg, device
        self.forward_model: torch.nn.Module = TrainingOutputs(model)  # the trainer wraps it in DDP
        r = cfg.retriever
        self.k = r.negatives
        self.ctx = [c[-r.max_context_tokens :] for c in train.context_ids]
        self.resp = [x[: r.max_response_tokens] for x in train.response_ids]
        self.pool = [x[: r.max_response_tokens] for x in train.pool_ids]
        self.lengths = np.array([(1 + self.k) * (len(c) + len(x) + 3) for c, x in zip(self.ctx, self.resp)])
        n_eval = r.eval_contexts or len(val)
        rows = np.random.default_rng(0).permutation(len(val))[: min(n_eval, len(val))]
        self.val = val.subset(np.sort(rows))

    def batches(self, epoch: int) -> list[np.ndarray]:
        t = self.cfg.retriever.train
        return token_budget_batches(self.lengths, t.batch_tokens, t.max_batch_size, self.cfg.runtime.seed, epoch)

    def collate(self, spec: np.ndarray, epoch: int, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.cfg.runtime.seed, epoch, index, 7])  # index: global over ranks
        negs = sample_negatives(rng, len(self.pool), self.train.pool_index[spec], self.k)  # (B, k)
        ctx = [self.ctx[i] for i in spec]
        resp = [self.resp[i] for i in spec] + [self.pool[j] for col in negs.T for j in col]
        pad = self.model.special.pad
        c, cm = pad_ids(ctx * (1 + self.k), pad, self.device)
        r, rm = pad_ids(resp, pad, self.device)
        labels = torch.zeros(len(resp), device=self.device)
        labels[: len(spec)] = 1.0
        tokens = int(sum(len(x) for x in ctx) * (1 + self.k) + sum(len(x) for x in resp))
        return {"ctx": c, "ctx_mask": cm, "resp": r, "resp_mask": rm, "labels": labels, "n_pos": len(spec), "tokens": tokens}

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        logits, aux, stats = self.forward_model(batch["ctx"], batch["ctx_mask"], batch["resp"],
                                                batch["resp_mask"], batch["n_pos"])
        logits = logits.float()
        bce = F.binary_cross_entropy_with_logits(logits, batch["labels"])
        loss = bce if aux is None else bce + aux
        with torch.no_grad():
            probs, n = torch.sigmoid(logits), batch["n_pos"]
            stats.update(bce=bce.detach(), pos_score=probs[:n].mean(), neg_score=probs[n:].mean(),
                         acc=((probs > 0.5).float() == batch["labels"]).float().mean(), tokens=batch["tokens"])
        return loss, stats

    def evaluate(self) -> dict[str, Any]:
        return evaluate_pool(self.model, self.val)

    def save_model(self, folder: Path) -> None:
        save_reward(self.model, folder)

    def load_model(self, folder: Path) -> None:
        load_weights(self.model, folder)
