"""A pretrained encoder-decoder LM (Blenderbot, BlenderbotSmall, BART, T5, ... any
`AutoModelForSeq2SeqLM`) behind the generator contract, so CE and CORAL (eq. 2-3) fine-tune it
like the paper's BART (§4.1), but in the model's own dialogue format and special tokens.

Teacher forcing is `Seq2SeqPolicy.teacher` unchanged: it only reads `start_id` / `end_id`, which
here are the model's `decoder_start_token_id` and the tokenizer's eos.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from coral_cli.config.schema import DataConfig, GenerateConfig
from coral_cli.generator.core.batch import Responses
from coral_cli.generator.core.policy import Policy, Seq2SeqPolicy
from coral_cli.generator.decoding.sampling import cut_at_end, run_generate
from coral_cli.generator.decoding.step_logprobs import StepLogprobs
from coral_cli.rewards.packing import pad_ids

BLENDERBOT_TYPES = ("blenderbot", "blenderbot-small")
BLENDERBOT_SEP = "  "  # two spaces: the turn separator of Blenderbot's chat template / ParlAI


class PretrainedSeq2SeqPolicy(Seq2SeqPolicy):
    """Encoder: the context's turns joined by the model's separator (`turn_separator`), tokenized with
    the model's own special tokens, oldest tokens cut first. Decoder: `decoder_start_token_id` r ->
    r eos; labels cover the response and eos only."""

    kind = "seq2seq-lm"

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase) -> None:
        end_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else model.config.eos_token_id
        start_id = model.config.decoder_start_token_id
        if end_id is None or start_id is None:
            raise ValueError("a seq2seq LM needs an eos token and config.decoder_start_token_id")
        Policy.__init__(self, model, tokenizer, end_id)
        self.start_id = start_id
        self.model_type = getattr(model.config, "model_type", "")
        self.separator = self.turn_separator()
        self.format = f"seq2seq-lm:{self.separator!r}"
        self.pre, self.post = self.specials()

    def turn_separator(self) -> str:
        """How turns are joined in the encoder text. Blenderbot (both sizes) was trained on turns
        joined by two spaces (its tokenizer's chat template and ParlAI's delimiter), so that is
        used for it. Other models (BART, T5) have no dialogue format of their own: turns are
        joined by the tokenizer's sep token, else its eos token (what separates segments in their
        pretraining), else a newline."""
        tok = self.tokenizer
        if self.model_type in BLENDERBOT_TYPES:
            return BLENDERBOT_SEP
        token = tok.sep_token or tok.eos_token
        return f" {token} " if token else "\n"

    def context_ids(self, contexts: Sequence[Sequence[str]], budget: int) -> list[list[int]]:
        """The whole encoder input of each context (with the model's special tokens, e.g. the
        final eos), at most `budget` tokens: the text is cut from the left, specials are kept."""
        pre, post = self.pre, self.post
        room = max(budget - len(pre) - len(post), 0)
        texts = [self.separator.join(turns) for turns in contexts]
        bodies = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        return [(pre + (list(b[-room:]) if room else []) + post)[-budget:] for b in bodies]

    def specials(self) -> tuple[list[int], list[int]]:
        """The ids `add_special_tokens=True` puts before and after a text (BART: <s> .. </s>,
        T5 and Blenderbot: .. </s>), read off one probe text."""
        tok = self.tokenizer
        full = tok("hello", add_special_tokens=True)["input_ids"]
        body = tok("hello", add_special_tokens=False)["input_ids"]
        start = next(i for i in range(len(full) - len(body) + 1) if full[i:i + len(body)] == body)
        return full[:start], full[start + len(body):]

    def text(self, ids: Sequence[int]) -> str:
        return Policy.text(self, ids)

    def encode_batch(self, batch: dict[str, list[Any]], cfg: DataConfig) -> dict[str, list[Any]]:
        return Policy.encode_batch(self, batch, cfg)

    def prompts(self, context_ids: Sequence[Sequence[int]], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_ids(context_ids, self.pad_id, device, self.pad_multiple)  # already whole encoder inputs

    def sample(self, model: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, g: GenerateConfig,
               num_return_sequences: int | None = None, bf16: bool = True,
               record: StepLogprobs | None = None) -> Responses:
        out = run_generate(model, prompt_ids, prompt_mask, g, num_return_sequences, bf16, record, pad_token_id=self.pad_id,
                           eos_token_id=self.end_id, decoder_start_token_id=self.start_id)
        ids = out[:, 1:]  # drop the decoder start token
        mask, ended = cut_at_end(ids, torch.tensor([self.end_id], device=ids.device))
        return Responses(ids, mask, ended)
