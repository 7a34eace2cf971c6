"""The Mirror baseline (`coral_cli.generator.mirror.model`) behind the generator contract, so
training, validation, `coral generate`, evaluate's predictions and chat use it like any backend;
and its checkpoints.

Data are the paper's BART's ids unchanged (`Seq2SeqPolicy`: encoder "[CLS] u1 [SEP] ... [SEP] un
[SEP]", decoder "[CLS] y" -> "y [SEP]"), so pairs are tokenized and cached once for both. The
policy cuts each prompt into Mirror's slots: x = un (the pre-final utterance, the query), c = u1
[SEP] ... u(n-1) (empty for a one-turn context). A response's log-prob is that of the forward
decoder p(y | c, x, z) at z = the prior mean; generation draws z ~ p(z | c) (`mirror_decode`).

Checkpoints: model.safetensors (the state dict), the tokenizer files and coral.json with
"backend": "mirror" and the model sizes ("mirror"), so generate, chat, --init and resume rebuild it
from the folder alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from coral_cli.config.schema import CoralConfig, DataConfig, GenerateConfig, MirrorConfig
from coral_cli.config.typed import build
from coral_cli.errors import AssetError, ConfigError
from coral_cli.generator.core.batch import IGNORE, Responses, TeacherBatch
from coral_cli.generator.core.checkpoint import (META_FILE, WEIGHTS_FILE, check_tokenizer_files, check_weights,
                                                 load_exactly, read_meta, write_meta)
from coral_cli.generator.core.policy import Seq2SeqPolicy
from coral_cli.generator.decoding.sampling import cut_at_end
from coral_cli.generator.decoding.step_logprobs import StepLogprobs
from coral_cli.generator.mirror import decode as mirror_decode
from coral_cli.generator.mirror.model import MirrorModel, Segment
from coral_cli.tokenizer import load_tokenizer

BACKEND = "mirror"
ARCH_KEYS = ("embedding_dim", "hidden", "layers", "z_dim")  # what an --init checkpoint fixes


@dataclass
class MirrorInputs:
    """Everything the four decoders are teacher-forced on, from one `TeacherBatch`."""

    c: Segment  # (B, Sc) the turns before the query
    x: Segment  # (B, Sx) the query (pre-final utterance)
    y: Segment  # (B, Sy) the response
    x_in: torch.Tensor  # (B, Tx) [CLS] x
    x_labels: torch.Tensor  # (B, Tx) x [SEP], IGNORE at padding
    y_in: torch.Tensor  # (B, Ty) [CLS] y
    y_labels: torch.Tensor  # (B, Ty) y [SEP]


class MirrorPolicy(Seq2SeqPolicy):
    """Seq2SeqPolicy's format with Mirror's model: `logits` and `sample` run the forward decoder."""

    kind = BACKEND

    def __init__(self, model: MirrorModel, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(model, tokenizer)

    def split(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[Segment, Segment]:
        """Prompts "[CLS] u1 [SEP] ... un [SEP]" (B, P), right-padded -> (c, x) (vectorised)."""
        is_sep = prompt_ids.eq(self.end_id) & prompt_mask
        count = is_sep.sum(1)  # (B,) the closing [SEP] included
        last = prompt_mask.sum(1) - 1  # the closing [SEP]
        second = is_sep & is_sep.long().cumsum(1).eq((count - 1)[:, None])
        prev = torch.where(count >= 2, second.long().argmax(1), torch.zeros_like(count))  # else the [CLS]
        one = torch.ones_like(prev)
        c = _segment(prompt_ids, one, (prev - 1).clamp(min=0), self.pad_id)
        x = _segment(prompt_ids, prev + 1, (last - prev - 1).clamp(min=0), self.pad_id)
        return c, x

    def training_inputs(self, batch: TeacherBatch) -> MirrorInputs:
        """The ground truth's teacher batch -> the inputs and targets of all four decoders."""
        c, x = self.split(batch.input_ids, batch.attention_mask)
        y_in, y_labels = batch.decoder_input_ids, batch.labels
        labels = y_labels[:, : y_in.shape[1] - 1]
        y_mask = labels.ne(IGNORE) & labels.ne(self.end_id)
        y = Segment(y_in[:, 1:].masked_fill(~y_mask, self.pad_id), y_mask)
        ended = torch.ones(x.ids.shape[0], dtype=torch.bool, device=x.ids.device)
        back = self.teacher(batch.input_ids, batch.attention_mask, Responses(x.ids, x.mask, ended))
        return MirrorInputs(c, x, y, back.decoder_input_ids, back.labels, y_in, y_labels)

    def logits(self, model: Any, batch: TeacherBatch) -> torch.Tensor:
        c, x = self.split(batch.input_ids, batch.attention_mask)
        return _unwrap(model).response_logits(c, x, batch.decoder_input_ids)

    def sample(self, model: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, g: GenerateConfig,
               num_return_sequences: int | None = None, bf16: bool = True,
               record: StepLogprobs | None = None) -> Responses:
        """Mirror's decoding (fp32; `bf16` does not apply): beam search from one z per context, or
        greedy / nucleus with one z per returned row."""
        n, m = num_return_sequences or g.num_return_sequences, _unwrap(model)
        c, x = self.split(prompt_ids, prompt_mask)
        ids_args = (self.start_id, self.end_id, self.pad_id)
        if g.strategy == "beam":
            if record is not None:
                raise ValueError("beam search reorders rows between steps: re-score its samples instead")
            ids = mirror_decode.beam_search(m, m.start(c, x), g, n, *ids_args)
        else:
            if g.strategy == "greedy" and n > 1:
                raise ValueError("greedy decoding returns one sequence per context; use nucleus or beam")
            rows = torch.arange(x.ids.shape[0], device=x.ids.device).repeat_interleave(n)
            state = m.start(Segment(c.ids[rows], c.mask[rows]), Segment(x.ids[rows], x.mask[rows]))
            ids = mirror_decode.sample(m, state, g, *ids_args, record=record)
        mask, ended = cut_at_end(ids, torch.tensor([self.end_id], device=ids.device))
        return Responses(ids, mask, ended)


def _segment(ids: torch.Tensor, start: torch.Tensor, length: torch.Tensor, pad_id: int) -> Segment:
    """Row b's ids[start_b : start_b + length_b], right-padded -> Segment (B, max length)."""
    width = int(length.max()) if length.numel() else 0
    offsets = torch.arange(width, device=ids.device)[None, :]
    mask = offsets < length[:, None]
    pos = (start[:, None] + offsets).clamp(max=max(ids.shape[1] - 1, 0))
    return Segment(ids.gather(1, pos).masked_fill(~mask, pad_id), mask)


def _unwrap(model: Any) -> MirrorModel:
    return getattr(model, "module", model)  # a DDP wrapper holds the model in .module


def build_mirror(cfg: MirrorConfig, tok: PreTrainedTokenizerBase) -> MirrorModel:
    """A freshly initialised Mirror model over the tokenizer's vocabulary."""
    return MirrorModel(cfg, len(tok), tok.pad_token_id)


def mirror_policy(cfg: CoralConfig, device: torch.device) -> MirrorPolicy:
    """The Mirror model a `--loss mirror` run trains: --init's weights, else a fresh one of
    `[generator.mirror]`'s sizes. A Mirror --init for another loss, or a pretrained LM, is refused."""
    g = cfg.generator
    if cfg.objective.loss != "mirror":
        raise ConfigError(f"--init {g.init} is a Mirror checkpoint: it trains with --loss mirror only",
                          "pass --loss mirror, or --init a checkpoint of another generator")
    if g.pretrained:
        raise ConfigError("--loss mirror trains the Mirror LSTM CVAE, not a pretrained LM",
                          "drop --pretrained (generator.pretrained), or use --loss ce or coral")
    if g.init:
        meta = read_meta(g.init)
        if meta.get("backend") != BACKEND:
            raise ConfigError(f"--init {g.init} is not a Mirror checkpoint",
                              "pass a checkpoint written by a --loss mirror run, or drop --init")
        adopt_mirror_sizes(cfg, meta)
        return load_mirror_policy(g.init, device, meta, trainable=True)
    tok = load_tokenizer(cfg.tokenizer.name)
    return MirrorPolicy(build_mirror(g.mirror, tok).to(device), tok)


def adopt_mirror_sizes(cfg: CoralConfig, meta: dict[str, Any]) -> CoralConfig:
    """An --init Mirror checkpoint's sizes into `[generator.mirror]`, so config.toml records them."""
    arch = mirror_config(meta, cfg.generator.init)
    sizes = {k: getattr(arch, k) for k in ARCH_KEYS}
    cfg.generator = dataclasses.replace(cfg.generator, mirror=dataclasses.replace(cfg.generator.mirror, **sizes))
    return cfg


def save_mirror(policy: MirrorPolicy, folder: str | Path, data: DataConfig) -> Path:
    """model.safetensors + tokenizer + coral.json (backend, sizes, data budgets) into `folder`."""
    from safetensors.torch import save_file

    folder, model = Path(folder), policy.model
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS_FILE))
    policy.tokenizer.save_pretrained(str(folder))
    write_meta(folder, {"backend": BACKEND, "mirror": dataclasses.asdict(model.cfg), "vocab_size": model.vocab_size,
                        "data": dataclasses.asdict(data)})
    return folder


def mirror_config(meta: dict[str, Any], folder: str | Path) -> MirrorConfig:
    """The model sizes in a checkpoint's coral.json, checked like a recipe's."""
    errors: list[str] = []
    raw = meta.get("mirror")
    cfg = build(MirrorConfig, raw, errors) if isinstance(raw, dict) else None
    if cfg is None or errors or not isinstance(meta.get("vocab_size"), int):
        why = "; ".join(errors) or "no 'mirror' sizes or 'vocab_size'"
        raise AssetError(f"{folder}/{META_FILE} does not describe a Mirror model ({why})",
                         "re-train it with 'coral coral train --loss mirror', or restore coral.json")
    return cfg


def load_mirror_policy(folder: str | Path, device: torch.device | str, meta: dict[str, Any],
                       trainable: bool = False) -> MirrorPolicy:
    """The Mirror model of `folder` on `device`, in eval mode unless `trainable`."""
    folder = Path(folder)
    cfg = mirror_config(meta, folder)
    check_tokenizer_files(folder)
    tok = load_tokenizer(str(folder))
    model = MirrorModel(cfg, meta["vocab_size"], tok.pad_token_id)
    load_mirror_weights(model, folder)
    return MirrorPolicy(model.to(device).train(trainable), tok)


def load_mirror_weights(model: MirrorModel, folder: str | Path) -> None:
    """`folder`'s safetensors weights into `model` in place (load and resume): missing, extra,
    misshapen or non-finite tensors are an `AssetError`."""
    load_exactly(model, check_weights(Path(folder)),
                 "resume with the config the run was started with, or pass a matching Mirror checkpoint",
                 "this Mirror model")
