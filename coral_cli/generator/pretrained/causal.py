"""A decoder-only pretrained LM behind the generator contract, in its own chat (or eos-joined)
dialogue format."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from coral_cli.config.schema import GenerateConfig
from coral_cli.generator.core.batch import IGNORE, Responses, TeacherBatch, pad_left
from coral_cli.generator.core.policy import Policy
from coral_cli.generator.decoding.sampling import cut_at_end, run_generate
from coral_cli.generator.decoding.step_logprobs import StepLogprobs


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
        return pad_left(context_ids, self.pad_id, device, self.pad_multiple)

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
