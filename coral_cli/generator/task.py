"""The `Task` the shared trainer runs for the generator: length-bucketed token-budget batches of
(context, response) pairs, a pluggable objective, validation loss, HF-format checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from coral_cli.config.schema import CoralConfig
from coral_cli.generator.batch import IGNORE, Seq2SeqBatch, seq2seq_batch
from coral_cli.generator.model import save_generator
from coral_cli.training.batching import token_budget_batches

Objective = Callable[[PreTrainedModel, Seq2SeqBatch], tuple[torch.Tensor, dict[str, Any]]]


class GeneratorTask:
    """Trains `model` with `objective`; early stopping on validation loss (CE) by default."""

    metric = "val_loss"
    higher_is_better = False

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, objective: Objective,
                 train: dict[str, list], val: dict[str, list], cfg: CoralConfig, device: torch.device) -> None:
        self.model, self.tok, self.objective, self.cfg, self.device = model, tok, objective, cfg, device
        self.ctx, self.resp = train["context_ids"], train["response_ids"]
        self.lengths = np.array([len(c) + len(r) + 3 for c, r in zip(self.ctx, self.resp)])
        n = cfg.generator.eval_pairs or len(val["context_ids"])
        self.val_ctx, self.val_resp = val["context_ids"][:n], val["response_ids"][:n]

    def batches(self, epoch: int) -> list[np.ndarray]:
        t = self.cfg.train
        return token_budget_batches(self.lengths, t.batch_tokens, t.max_batch_size, self.cfg.runtime.seed, epoch)

    def make_batch(self, ctx: list, resp: list) -> Seq2SeqBatch:
        t = self.tok
        return seq2seq_batch(ctx, resp, t.cls_token_id, t.sep_token_id, t.pad_token_id, self.device)

    def collate(self, spec: np.ndarray, epoch: int, index: int) -> Seq2SeqBatch:
        return self.make_batch([self.ctx[i] for i in spec], [self.resp[i] for i in spec])

    def loss(self, batch: Seq2SeqBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.objective(self.model, batch)

    def evaluate(self) -> dict[str, Any]:
        return {"val_loss": validation_loss(self.model, self, self.val_ctx, self.val_resp)}

    def save_model(self, folder: Path) -> None:
        save_generator(self.model, self.tok, folder, self.cfg.data)

    def load_model(self, folder: Path) -> None:
        saved = type(self.model).from_pretrained(str(folder))
        self.model.load_state_dict(saved.state_dict())


def validation_loss(model: PreTrainedModel, task: GeneratorTask, ctx: list, resp: list) -> float:
    """Token-level NLL of the references (summed, then divided by the number of tokens)."""
    t = task.cfg.train
    lengths = np.array([len(c) + len(r) + 3 for c, r in zip(ctx, resp)])
    total = torch.zeros((), device=task.device)
    count = torch.zeros((), device=task.device)
    for idx in token_budget_batches(lengths, t.batch_tokens, t.max_batch_size, seed=None):
        batch = task.make_batch([ctx[i] for i in idx], [resp[i] for i in idx])
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                       decoder_input_ids=batch.decoder_input_ids, use_cache=False).logits
        total += torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), batch.labels.flatten(),
                                                   ignore_index=IGNORE, reduction="sum")
        count += batch.labels.ne(IGNORE).sum()
    return float(total / count.clamp(min=1))
