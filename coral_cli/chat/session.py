"""A chat session: for each user turn the generator proposes N candidates, each with f_R, R3 and
its mean token log-prob; the reply is the best by R3 (a reranked best-of-N, which the paper does
not have) or the model's first sample. Used by the Textual app and by `coral chat --plain`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from coral_cli.config.schema import GenerateConfig
from coral_cli.errors import CoralError
from coral_cli.generation.responses import score_samples
from coral_cli.generator.core.policy import Policy
from coral_cli.objectives.reward_input import score_candidates


@dataclass
class ChatSettings:
    """What the user can change while chatting."""

    n: int = 4  # candidates per turn
    strategy: str = "nucleus"  # greedy, beam or nucleus
    top_p: float = 0.9
    temperature: float = 1.0
    max_new_tokens: int = 32
    margin: float = 0.0  # R3 = f_R - margin
    rerank: bool = True  # reply with the best candidate by R3, else the first sample

    def decoding(self) -> GenerateConfig:
        n = 1 if self.strategy == "greedy" else self.n
        return GenerateConfig(strategy=self.strategy, top_p=self.top_p, temperature=self.temperature,
                              max_new_tokens=self.max_new_tokens, num_return_sequences=n, num_beams=max(4, n),
                              min_new_tokens=1)


@dataclass
class Candidate:
    text: str
    logprob: float  # mean token log-prob under the generator
    tokens: list[tuple[str, float]]  # (word piece, probability) of each generated token
    f_r: float | None = None
    r3: float | None = None


@dataclass
class Turn:
    user: str
    context: list[str]  # the utterances before the reply (user turn included)
    seen_context: str  # the truncated context the model actually saw, as text
    candidates: list[Candidate] = field(default_factory=list)
    chosen: int = 0
    settings: ChatSettings = field(default_factory=ChatSettings)  # its own, as made: /n or /margin change later turns

    @property
    def reply(self) -> str:
        return self.candidates[self.chosen].text if self.candidates else ""


class ChatSession:
    """History + generation + scoring; no UI code."""

    def __init__(self, policy: Policy, reward: Any | None, max_context_tokens: int,
                 settings: ChatSettings | None = None, history: list[str] | None = None) -> None:
        self.policy, self.reward = policy, reward
        self.model, self.tok = policy.model.eval(), policy.tokenizer
        self.max_context_tokens = max_context_tokens
        self.settings = settings or ChatSettings()
        self.prefix = list(history or [])  # e.g. a DailyDialog context to start from
        self.turns: list[Turn] = []

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def history(self) -> list[str]:
        out = list(self.prefix)
        for t in self.turns:
            out += [t.user, t.reply]
        return out

    def say(self, text: str) -> Turn:
        """Add a user turn and propose candidates for it."""
        text = text.strip()
        if not text:
            raise CoralError("empty message", "type something to say")
        turn = Turn(text, self.history() + [text], "")
        self.turns.append(turn)
        try:
            self._propose(turn)
        except Exception:
            self.turns.pop()
            raise
        return turn

    def regenerate(self) -> Turn:
        if not self.turns:
            raise CoralError("nothing to regenerate", "say something first")
        self._propose(self.turns[-1])
        return self.turns[-1]

    def choose(self, index: int) -> Turn:
        turn = self.turns[-1]
        if not 0 <= index < len(turn.candidates):
            raise CoralError(f"no candidate {index + 1}", f"pick 1..{len(turn.candidates)}")
        turn.chosen = index
        return turn

    def undo(self) -> None:
        if self.turns:
            self.turns.pop()

    def clear(self) -> None:
        self.turns, self.prefix = [], []

    def transcript(self) -> list[dict[str, Any]]:
        """JSON-ready turns with every candidate's scores and the settings that turn was made (and
        last rescored) with, not the session's current ones."""
        return [{"turn": i, "context": t.context, "seen_context": t.seen_context, "user": t.user, "reply": t.reply,
                 "chosen": t.chosen, "settings": dataclasses.asdict(t.settings),
                 "candidates": [{"text": c.text, "f_R": c.f_r, "R3": c.r3, "logprob": c.logprob} for c in t.candidates]}
                for i, t in enumerate(self.turns)]

    @torch.inference_mode()
    def _propose(self, turn: Turn) -> None:
        tok, s, policy = self.tok, self.settings, self.policy
        ids = policy.context_ids([turn.context], self.max_context_tokens)[0]
        turn.seen_context = tok.decode(ids, skip_special_tokens=True)
        enc, mask = policy.prompts([ids], self.device)
        samples = policy.sample(self.model, enc, mask, s.decoding())
        n = len(samples)
        logp, scored = score_samples(policy, enc.expand(n, -1), mask.expand(n, -1), samples)
        responses, texts = samples.lists(), policy.texts(samples)
        candidates = []
        for j, resp in enumerate(responses):
            mean = float(logp[j].sum() / max(int(scored[j].sum()), 1))
            probs = logp[j][scored[j]][: len(resp)].exp().tolist()  # the response tokens, in order
            candidates.append(Candidate(texts[j], mean, list(zip(tok.convert_ids_to_tokens(resp), probs))))
        if self.reward is not None:  # f_R against the truncated context the generator saw
            rows = torch.zeros(n, dtype=torch.long, device=self.device)
            f = score_candidates(self.reward, policy, [ids], [turn.context], samples, rows).tolist()
            for c, value in zip(candidates, f):
                c.f_r, c.r3 = value, value - s.margin
        if s.rerank and self.reward is not None:
            candidates.sort(key=lambda c: -c.r3)
        turn.candidates, turn.chosen, turn.settings = candidates, 0, dataclasses.replace(s)

    def rescore(self) -> None:
        """Re-apply the margin / rerank setting to the last turn (no new generation)."""
        if not self.turns:
            return
        turn = self.turns[-1]
        chosen = turn.candidates[turn.chosen] if turn.candidates else None
        for c in turn.candidates:
            if c.f_r is not None:
                c.r3 = c.f_r - self.settings.margin
        if self.settings.rerank and self.reward is not None:
            turn.candidates.sort(key=lambda c: -c.r3)
        turn.chosen = turn.candidates.index(chosen) if chosen else 0
        # its R3 and order now follow the new margin / rerank; its candidates are still the old decoding's
        turn.settings = dataclasses.replace(turn.settings, margin=self.settings.margin, rerank=self.settings.rerank)
