"""Any Hugging Face sequence classifier as f_R, e.g. microsoft/DialogRPT-updown (the paper's
DialogRPT baseline): a GPT-2 classifier reading "c1<|endoftext|>c2<|endoftext|>r" whose score is
the sigmoid of its single logit.

The classifier keeps its own tokenizer. Turns are joined with its eos token (DialogRPT style) or
its [SEP] token, and wrapped in the tokenizer's own special tokens (BERT: "[CLS] ... [SEP]"), so
scoring a pair equals calling the model on `tok(sep.join(context + [response]))`. One-logit
models give sigmoid(logit); two-label models give softmax p(label 1) = sigmoid(l1 - l0).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from coral_cli.api import AssetError, ConfigError, RetrieverConfig, RewardModel, SpecialIds, no_network, opt, pad_ids

SEPARATORS = ("auto", "eos", "sep")


@dataclass
class HFClassifierArgs:
    """Hugging Face classifier options (`[retriever.args]`)."""

    separator: str = opt("auto", "token between turns: eos (DialogRPT), sep, or auto (sep if the "
                                 "tokenizer has one, else eos)", choices=SEPARATORS)


class HFClassifierReward(RewardModel):
    """A Hugging Face AutoModelForSequenceClassification (folder or hub name in retriever.backbone)."""

    Args = HFClassifierArgs

    def __init__(self, cfg: RetrieverConfig, args: Any, special: SpecialIds, arch: dict[str, Any] | None) -> None:
        super().__init__(cfg, args, special, arch)
        if arch:  # a coral checkpoint: rebuild, then load_reward fills the weights
            config = AutoConfig.for_model(**arch["classifier"])
            self.classifier = AutoModelForSequenceClassification.from_config(config)
        else:
            self.classifier = _from_pretrained(AutoModelForSequenceClassification, cfg.backbone)
        config = self.classifier.config
        if config.num_labels not in (1, 2):
            raise ConfigError(f"classifier '{cfg.backbone}' has {config.num_labels} labels",
                              "use a one-logit (sigmoid) or two-label (softmax) sequence classifier")
        self.max_length = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 512)

    @classmethod
    def load_own_tokenizer(cls, name: str) -> PreTrainedTokenizerBase:
        """The classifier's tokenizer (checkpoint.py asks for it instead of the bundled BERT one)."""
        return _from_pretrained(AutoTokenizer, name)

    def attach(self, tok: PreTrainedTokenizerBase) -> None:
        """Set the tokenizer and derive the separator, padding and special-token frame from it."""
        self.tokenizer = tok
        kind = self.args.separator
        if kind == "auto":
            kind = "sep" if tok.sep_token_id is not None else "eos"
        sep = tok.sep_token_id if kind == "sep" else tok.eos_token_id
        if sep is None:
            raise ConfigError(f"the tokenizer of '{self.cfg.backbone}' has no {kind} token",
                              "set retriever.args.separator to the other one (eos or sep)")
        pad = next(i for i in (tok.pad_token_id, self.classifier.config.pad_token_id, tok.eos_token_id, 0) if i is not None)
        if self.classifier.config.pad_token_id is None:  # GPT-2 classifiers find the last token by it
            self.classifier.config.pad_token_id = pad
        bare = tok("x", add_special_tokens=False).input_ids
        full = tok("x").input_ids
        at = next(i for i in range(len(full)) if full[i:i + len(bare)] == bare)
        self.prefix, self.suffix = full[:at], full[at + len(bare):]  # e.g. [CLS] / [SEP] for BERT
        self.special = SpecialIds(self.prefix[0] if self.prefix else sep, sep, pad, len(tok))

    def arch(self) -> dict[str, Any]:
        return {"classifier": self.classifier.config.to_dict()}

    def forward(self, ctx: torch.Tensor, ctx_mask: torch.Tensor, resp: torch.Tensor, resp_mask: torch.Tensor) -> torch.Tensor:
        """Ids in this classifier's tokens (contexts joined with the separator) -> (B,) logits."""
        budget = self.max_length - len(self.prefix) - len(self.suffix) - 1
        rows = []
        for c, cm, r, rm in zip(ctx.tolist(), ctx_mask.tolist(), resp.tolist(), resp_mask.tolist()):
            r = [t for t, m in zip(r, rm) if m][:budget]
            c = [t for t, m in zip(c, cm) if m]
            c = c[max(0, len(c) - (budget - len(r))):]  # the oldest context tokens go first
            rows.append(self.prefix + c + [self.special.sep] + r + self.suffix)
        ids, mask = pad_ids(rows, self.special.pad, ctx.device)
        logits = self.classifier(input_ids=ids, attention_mask=mask.long()).logits  # (B, 1 or 2)
        return logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]

    def score(self, contexts: Sequence[Sequence[str]], responses: Sequence[str]) -> torch.Tensor:
        """f_R(c, r) for texts -> (B,) in (0, 1), input order; contexts cut from the left."""
        tok = self.tokenizer
        turns = sorted({u for c in contexts for u in c} | set(responses))
        ids = dict(zip(turns, tok(turns, add_special_tokens=False).input_ids)) if turns else {}
        sep = self.special.sep
        ctx = []
        for c in contexts:
            joined = [t for i, u in enumerate(c) for t in ([sep] if i else []) + ids[u]]
            ctx.append(joined[-self.cfg.max_context_tokens:])
        return self.score_ids(ctx, [ids[r] for r in responses])


def _from_pretrained(loader: Any, name: str) -> Any:
    """`loader.from_pretrained(name)`: offline for folders and HF_HUB_OFFLINE=1; errors as AssetError."""
    local = Path(name).expanduser().is_dir()
    offline = local or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    kwargs = {"use_safetensors": True} if local and loader is not AutoTokenizer else {}
    try:
        return loader.from_pretrained(str(Path(name).expanduser()) if local else name, local_files_only=offline, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if local:
            raise AssetError(f"cannot load the classifier in {name}: {first}",
                             "pass a folder written by save_pretrained (config.json, *.safetensors, tokenizer files)") from None
        if offline or no_network(exc):
            raise AssetError(f"cannot download {name}: no internet (or HF_HUB_OFFLINE=1)",
                             "pass a local folder holding the classifier (config.json, *.safetensors, tokenizer files)") from None
        raise AssetError(f"cannot load {name} from the Hugging Face hub: {first}",
                         "check the name (org/name) and that it is a sequence-classification model") from None
