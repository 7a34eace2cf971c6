"""The generator contract: one object per backend that training (CE and CORAL, eq. 2-3),
on-policy sampling, validation, `coral generate`, chat, evaluate and bench all use.

A `Policy` holds the model and its tokenizer and knows the backend's dialogue format: how a
context (its utterances) becomes prompt ids, how a response ends, how teacher forcing lines up
labels with logits, and how a response is cut out of `model.generate`'s output. The loss always
covers the response tokens (and the end token) only.

`Seq2SeqPolicy` is the encoder-decoder format of the paper's model (§4.1), over the BERT
WordPiece vocabulary, encoder "[CLS] u1 [SEP] u2 ... [SEP]", decoder "[CLS] r" -> "r [SEP]". It
lives here, not in bart/, because three backends share it: the paper's BART, the Mirror baseline
(same ids) and pretrained seq2seq LMs (same teacher forcing). The decoder-only `CausalPolicy` is
in pretrained/causal.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from transformers import PreTrainedTokenizerBase

from coral_cli.config.schema import DataConfig, GenerateConfig
from coral_cli.data import encode
from coral_cli.generator.core.batch import IGNORE, Responses, TeacherBatch
from coral_cli.generator.core.logprobs import label_logprobs
from coral_cli.generator.core.scored_head import scored_logits
from coral_cli.generator.decoding.sampling import cut_at_end, run_generate
from coral_cli.generator.decoding.step_logprobs import StepLogprobs
from coral_cli.rewards.packing import pad_ids
from coral_cli.tokenizer import tokenizer_fingerprint, wordpiece_text


class Policy:
    """What every backend provides (shapes in the docstrings); subclasses fill in the format."""

    kind: ClassVar[str] = ""  # 'seq2seq' or 'causal'
    format: str = ""  # the dialogue format, part of the tokenization cache key

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase, end_id: int) -> None:
        self.model, self.tokenizer, self.end_id = model, tokenizer, end_id
        self.pad_multiple = 1  # prompts and responses padded to a multiple of this (train.pad_to_multiple)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def fingerprint(self) -> str:
        """Tokenizer + dialogue format: equal fingerprints encode text identically."""
        return hashlib.sha1(f"{tokenizer_fingerprint(self.tokenizer)}|{self.format}".encode()).hexdigest()[:16]

    # ---- text <-> ids ---------------------------------------------------------------------
    def context_ids(self, contexts: Sequence[Sequence[str]], budget: int) -> list[list[int]]:
        """Each context (its utterances) -> prompt body ids, at most `budget` tokens, oldest cut first."""
        raise NotImplementedError

    def response_ids(self, texts: Sequence[str], budget: int) -> list[list[int]]:
        """Response texts -> ids without the end token, at most `budget` tokens."""
        ids = encode.token_ids(self.tokenizer, list(texts))
        return [ids[t][:budget] for t in texts]

    def text(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def texts(self, responses: Responses) -> list[str]:
        return [self.text(r) for r in responses.lists()]

    def encode_batch(self, batch: dict[str, list[Any]], cfg: DataConfig) -> dict[str, list[Any]]:
        """The `datasets.map` function that tokenizes pairs once (cached on disk by `fingerprint`)."""
        ctx = self.context_ids(batch["context"], cfg.max_context_tokens)
        full = self.response_ids(batch["response"], 1 << 30)
        return {"context_ids": ctx, "response_ids": [r[: cfg.max_response_tokens] for r in full],
                "context_tokens_total": [len(c) for c in ctx], "response_tokens_total": [len(r) for r in full]}

    # ---- tensors --------------------------------------------------------------------------
    def prompts(self, context_ids: Sequence[Sequence[int]], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """Context ids -> the prompt tensors (B, P) generation and teacher forcing start from."""
        raise NotImplementedError

    def teacher(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, responses: Responses) -> TeacherBatch:
        """Prompts (B, P) + responses (B, L) -> teacher forcing on the device (no host round trip);
        the end token is a target only where a response `ended`."""
        raise NotImplementedError

    def logits(self, model: Any, batch: TeacherBatch) -> torch.Tensor:
        """(B, T, V) logits aligned with `batch.labels`. `model` may be a DDP wrapper of `self.model`."""
        raise NotImplementedError

    def sample(self, model: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, g: GenerateConfig,
               num_return_sequences: int | None = None, bf16: bool = True,
               record: StepLogprobs | None = None) -> Responses:
        """Decode responses for prompts (B, P) -> B * n rows (context-major), cut at the end token;
        `record` (see `run_generate`) collects the log-probs of the tokens in `Responses.ids`."""
        raise NotImplementedError

    def scored_logits(self, model: Any, batch: TeacherBatch, index: torch.Tensor | None = None) -> torch.Tensor:
        """(M, V) logits of the M label tokens (labels != IGNORE, row-major): `logits` with the LM
        head run on those positions only (generator/core/scored_head.py). `index`: the batch's
        `scored_index()`, when the caller has it already."""
        index = batch.scored_index() if index is None else index
        return scored_logits(lambda: self.logits(model, batch), model, batch.labels.ne(IGNORE), index)

    def logprobs(self, model: Any, batch: TeacherBatch) -> torch.Tensor:
        """(B, T) log P of each label token (0 where IGNORE)."""
        index = batch.scored_index()
        return label_logprobs(self.scored_logits(model, batch, index), batch.labels, index)

    def ground_truth(self, context_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]],
                     device: torch.device | str) -> tuple[TeacherBatch, torch.Tensor, torch.Tensor]:
        """(teacher batch, prompt ids, prompt mask) of dataset pairs, every response ended."""
        ids, mask = self.prompts(context_ids, device)
        batch = self.teacher(ids, mask, Responses.from_lists(response_ids, self.pad_id, device, self.pad_multiple))
        batch.tokens = sum(len(c) for c in context_ids) + sum(len(r) + 1 for r in response_ids)
        batch.scored = sum(len(r) + 1 for r in response_ids)  # every response token, then its end token
        return batch, ids, mask


class Seq2SeqPolicy(Policy):
    """An encoder-decoder over WordPiece: the paper's BART (§4.1), [CLS] starts, [SEP] ends."""

    kind = "seq2seq"
    format = "wordpiece-sep"

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(model, tokenizer, tokenizer.sep_token_id)
        self.start_id = tokenizer.cls_token_id

    def context_ids(self, contexts: Sequence[Sequence[str]], budget: int) -> list[list[int]]:
        return encode.context_ids(self.tokenizer, [list(c) for c in contexts], budget)

    def text(self, ids: Sequence[int]) -> str:
        return wordpiece_text(self.tokenizer, list(ids))  # DailyDialog's spacing, as references have it

    def encode_batch(self, batch: dict[str, list[Any]], cfg: DataConfig) -> dict[str, list[Any]]:
        return encode.encode_batch(batch, self.tokenizer, cfg)

    def prompts(self, context_ids: Sequence[Sequence[int]], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_ids([[self.start_id, *c, self.end_id] for c in context_ids], self.pad_id, device, self.pad_multiple)

    def teacher(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, responses: Responses) -> TeacherBatch:
        n, length = responses.ids.shape
        ids = responses.ids.masked_fill(~responses.mask, self.pad_id)
        start = torch.full((n, 1), self.start_id, dtype=ids.dtype, device=ids.device)
        dec = torch.cat([start, ids], 1)  # (n, L + 1): [CLS] r
        labels = torch.cat([ids.masked_fill(~responses.mask, IGNORE), torch.full_like(start, IGNORE)], 1)
        pos = torch.arange(length + 1, device=ids.device)[None, :]
        end = pos.eq(responses.mask.sum(1, keepdim=True)) & responses.ended[:, None]
        labels = torch.where(end, torch.full_like(labels, self.end_id), labels)  # r [SEP]
        return TeacherBatch(prompt_ids, prompt_mask, dec, labels, 0)

    def logits(self, model: Any, batch: TeacherBatch) -> torch.Tensor:
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                     decoder_input_ids=batch.decoder_input_ids, use_cache=False).logits

    def sample(self, model: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, g: GenerateConfig,
               num_return_sequences: int | None = None, bf16: bool = True,
               record: StepLogprobs | None = None) -> Responses:
        out = run_generate(model, prompt_ids, prompt_mask, g, num_return_sequences, bf16, record)
        ids = out[:, 1:]  # drop the decoder start token
        mask, ended = cut_at_end(ids, torch.tensor([self.end_id], device=ids.device))
        return Responses(ids, mask, ended)
