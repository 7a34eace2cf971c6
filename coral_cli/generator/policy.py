"""The generator contract: one object per backend that training (CE and CORAL, eq. 2-3),
on-policy sampling, validation, `coral generate`, chat, evaluate and bench all use.

A `Policy` holds the model and its tokenizer and knows the backend's dialogue format: how a
context (its utterances) becomes prompt ids, how a response ends, how teacher forcing lines up
labels with logits, and how a response is cut out of `model.generate`'s output. The loss always
covers the response tokens (and the end token) only.

`Seq2SeqPolicy` is the paper's model (§4.1): a randomly initialised encoder-decoder over the
BERT WordPiece vocabulary, encoder "[CLS] u1 [SEP] u2 ... [SEP]", decoder "[CLS] r" -> "r [SEP]".
`CausalPolicy` is any pretrained decoder-only LM in its own chat (or eos-joined) format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from transformers import PreTrainedTokenizerBase

from coral_cli.config.schema import DataConfig, GenerateConfig
from coral_cli.data import encode
from coral_cli.generator.batch import IGNORE, Responses, TeacherBatch, pad_left
from coral_cli.generator.logprobs import label_logprobs
from coral_cli.generator.scored_head import scored_logits
from coral_cli.generator.sampling import cut_at_end, run_generate
from coral_cli.generator.step_logprobs import StepLogprobs
from coral_cli.rewards.packing import pad_ids
from coral_cli.tokenizer import tokenizer_fingerprint, wordpiece_text


class Policy:
    """What every backend provides (shapes in the docstrings); subclasses fill in the format."""

    kind: ClassVar[str] = ""  # 'seq2seq' or 'causal'
    format: str = ""  # the dialogue format, part of the tokenization cache key

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase, end_id: int) -> None:
        self.model, self.tokenizer, self.end_id = model, tokenizer, end_id
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

    def scored_logits(self, model: Any, batch: TeacherBatch) -> torch.Tensor:
        """(M, V) logits of the M label tokens (labels != IGNORE, row-major): `logits` with the LM
        head run on those positions only (generator/scored_head.py)."""
        return scored_logits(lambda: self.logits(model, batch), model, batch.labels.ne(IGNORE))

    def logprobs(self, model: Any, batch: TeacherBatch) -> torch.Tensor:
        """(B, T) log P of each label token (0 where IGNORE)."""
        return label_logprobs(self.scored_logits(model, batch), batch.labels)

    def ground_truth(self, context_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]],
                     device: torch.device | str) -> tuple[TeacherBatch, torch.Tensor, torch.Tensor]:
        """(teacher batch, prompt ids, prompt mask) of dataset pairs, every response ended."""
        ids, mask = self.prompts(context_ids, device)
        batch = self.teacher(ids, mask, Responses.from_lists(response_ids, self.pad_id, device))
        batch.tokens = sum(len(c) for c in context_ids) + sum(len(r) + 1 for r in response_ids)
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
        return pad_ids([[self.start_id, *c, self.end_id] for c in context_ids], self.pad_id, device)

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


class CausalPolicy(Policy):
    """A decoder-only pretrained LM (Llama/SmolLM, GPT-2/DialoGPT, Qwen, ...): prompt and response
    in one sequence, prompts left-padded so generation continues every row from the last column.

    Format 'chat' (the tokenizer has a chat template): the context's utterances alternate user and
    assistant turns, the last one the user's, and the reply is always the assistant's turn, ended by
    the template's end-of-turn token (the tokenizer's eos). Format 'eos' (DialoGPT-style): the
    utterances joined and ended by eos, the reply ended by eos.
    """

    kind = "causal"

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("a causal LM's tokenizer needs an eos token to end responses")
        super().__init__(model, tokenizer, tokenizer.eos_token_id)
        self.format = "chat" if getattr(tokenizer, "chat_template", None) else "eos"
        self.blank_system = self.format == "chat" and _template_adds_a_system_turn(tokenizer)

    def context_ids(self, contexts: Sequence[Sequence[str]], budget: int) -> list[list[int]]:
        """The formatted prompt of each context; whole turns are dropped oldest first to fit
        `budget` (counted in this model's tokens), and a single turn too long is cut from the left."""
        return [self._fit(list(turns), budget)[1][-budget:] for turns in contexts]

    def kept_turns(self, turns: Sequence[str], budget: int) -> list[str]:
        """The turns `context_ids` keeps within `budget` (the oldest dropped first)."""
        return self._fit(list(turns), budget)[0]

    def messages(self, turns: Sequence[str]) -> list[dict[str, str]]:
        """The chat messages of a context: alternating turns, the last one the user's. A template
        that adds a default system prompt when none is given (SmolLM2's "You are a helpful AI
        assistant named SmolLM ...", Qwen's) gets an empty system turn instead: a dialogue context
        is the other speaker's words, not an assistant persona's instructions."""
        chat = [{"role": "user" if (len(turns) - i) % 2 else "assistant", "content": t} for i, t in enumerate(turns)]
        return [{"role": "system", "content": ""}, *chat] if self.blank_system else chat

    def _fit(self, turns: list[str], budget: int) -> tuple[list[str], list[int]]:
        ids = self._prompt(turns)
        while len(ids) > budget and len(turns) > 1:
            turns = turns[1:]
            ids = self._prompt(turns)
        return turns, ids

    def _prompt(self, turns: list[str]) -> list[int]:
        tok = self.tokenizer
        if self.format == "eos":
            ids: list[int] = []
            for turn in turns:
                ids += tok(turn, add_special_tokens=False)["input_ids"] + [self.end_id]
            return ids
        return list(tok.apply_chat_template(self.messages(turns), add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"])

    def prompts(self, context_ids: Sequence[Sequence[int]], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_left(context_ids, self.pad_id, device)

    def teacher(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, responses: Responses) -> TeacherBatch:
        """[pads, prompt | response, end, pads]; labels are shifted so that label t is the token
        logit t predicts: the response tokens and (where it ended) the end token, nothing else."""
        n, length = responses.ids.shape
        ids = responses.ids.masked_fill(~responses.mask, self.pad_id)
        pad = torch.full((n, 1), self.pad_id, dtype=ids.dtype, device=ids.device)
        pos = torch.arange(length + 1, device=ids.device)[None, :]
        end = pos.eq(responses.mask.sum(1, keepdim=True)) & responses.ended[:, None]
        resp = torch.where(end, torch.full_like(end, self.end_id, dtype=ids.dtype), torch.cat([ids, pad], 1))
        resp_mask = torch.cat([responses.mask, torch.zeros_like(responses.mask[:, :1])], 1) | end
        input_ids = torch.cat([prompt_ids, resp], 1)  # (n, P + L + 1)
        mask = torch.cat([prompt_mask, resp_mask], 1)
        targets = torch.cat([torch.full_like(prompt_ids, IGNORE), resp.masked_fill(~resp_mask, IGNORE)], 1)
        labels = torch.cat([targets[:, 1:], torch.full_like(targets[:, :1], IGNORE)], 1)
        return TeacherBatch(input_ids, mask, None, labels, 0)

    def logits(self, model: Any, batch: TeacherBatch) -> torch.Tensor:
        position_ids = (batch.attention_mask.long().cumsum(1) - 1).clamp(min=0)  # left padding
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=position_ids,
                     use_cache=False).logits

    def sample(self, model: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, g: GenerateConfig,
               num_return_sequences: int | None = None, bf16: bool = True,
               record: StepLogprobs | None = None) -> Responses:
        out = run_generate(model, prompt_ids, prompt_mask, g, num_return_sequences, bf16, record,
                           pad_token_id=self.pad_id, eos_token_id=self.end_id)
        ids = out[:, prompt_ids.shape[1]:]
        mask, ended = cut_at_end(ids, torch.tensor([self.end_id], device=ids.device))
        return Responses(ids, mask, ended)


def _template_adds_a_system_turn(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the chat template writes a system turn into a conversation that has none."""
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
        blank = tokenizer.apply_chat_template([{"role": "system", "content": ""}, {"role": "user", "content": "x"}],
                                              tokenize=False)
    except Exception:  # a template without a system role: nothing to blank
        return False
    return "system" in text and len(blank) < len(text)
