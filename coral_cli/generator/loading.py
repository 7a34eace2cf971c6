"""The one module that knows every generator backend: which one a checkpoint folder or model spec
is, how to check it cheaply, load it, save it and resume it. Backends never import each other;
whoever must choose between them (tasks, chat, generate, export, the pipeline) comes here.

Backends: the paper's BART (coral.json absent or "backend": "seq2seq"), the Mirror baseline
("mirror") and fine-tuned pretrained LMs ("causal", "seq2seq-lm", with or without LoRA adapters);
a pretrained LM spec itself (a short name, .gguf, hub name or plain HF folder) is a zero-shot policy.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from coral_cli.config.schema import CoralConfig, DataConfig
from coral_cli.generator.bart.model import (init_architecture, load_bart_policy, load_generator_weights,
                                            read_generator_config, save_generator)
from coral_cli.generator.core.checkpoint import META_FILE, backend_of, check_weights, read_meta
from coral_cli.generator.core.policy import Policy
from coral_cli.generator.mirror.policy import BACKEND as MIRROR
from coral_cli.generator.mirror.policy import adopt_mirror_sizes, load_mirror_policy, load_mirror_weights, save_mirror
from coral_cli.generator.pretrained.causal import CausalPolicy
from coral_cli.generator.pretrained.checkpoint import load_lm_policy, load_lm_weights, save_lm_policy
from coral_cli.generator.pretrained.seq2seq_lm import PretrainedSeq2SeqPolicy
from coral_cli.generator.pretrained.sources import REGISTRY, load_lm
from coral_cli.hub import is_hub_name

BART = "seq2seq"


def is_lm_spec(spec: str | Path) -> bool:
    """A bundled short name, a .gguf file, a hub name (org/name) that is no local path, or a plain
    Hugging Face folder (no coral.json): something to load with `load_lm`, not a coral checkpoint."""
    path = Path(spec)
    if path.is_dir():
        return not (path / META_FILE).is_file() and (path / "config.json").is_file() and \
            _model_type(path) not in ("bart", None)
    return str(spec) in REGISTRY or path.suffix == ".gguf" or is_hub_name(str(spec))


def check_policy_folder(folder: str | Path) -> None:
    """Cheap checks (no weights read) that `folder` is a generator the loaders accept, so errors
    come before a UI opens; a pretrained LM or a fine-tuned one is checked when it loads."""
    if is_lm_spec(folder) or backend_of(read_meta(folder)) != BART:
        return
    read_generator_config(folder)
    check_weights(Path(folder))


def load_policy(folder: str | Path, device: torch.device | str = "cpu",
                trainable: bool = False) -> tuple[Policy, dict[str, Any]]:
    """The generator backend of a checkpoint folder (the paper's BART, the Mirror baseline, or a
    fine-tuned pretrained LM with or without adapters) on `device`, in eval mode unless
    `trainable`, and its coral.json."""
    if is_lm_spec(folder):  # a pretrained LM as it is: the paper's zero-shot (ZS) rows
        return zero_shot_policy(str(folder), device)
    meta = read_meta(folder)
    backend = backend_of(meta)
    if backend == MIRROR:
        return load_mirror_policy(folder, device, meta, trainable), meta
    if backend != BART:
        return load_lm_policy(folder, device, meta, trainable), meta
    return load_bart_policy(folder, device, trainable)


def zero_shot_policy(spec: str, device: torch.device | str) -> tuple[Policy, dict[str, Any]]:
    """A pretrained LM with no fine-tuning, in eval mode (its own dialogue format)."""
    model, tok, source = load_lm(spec, device)
    if model.config.is_encoder_decoder:
        policy: Policy = PretrainedSeq2SeqPolicy(model.eval(), tok)
    else:
        policy = CausalPolicy(model.eval(), tok)
    return policy, {"backend": policy.kind, "base": {"spec": spec, "identity": source.identity}, "zero_shot": True}


def adopt_init_architecture(cfg: CoralConfig) -> CoralConfig:
    """With `generator.init`, the model's sizes are the checkpoint's: put them into the config, so
    the run's config.toml records the model it really trains (the recipe's sizes are ignored)."""
    if not cfg.generator.init:
        return cfg
    meta = read_meta(cfg.generator.init)
    backend = backend_of(meta)
    if backend == MIRROR:  # the Mirror baseline: its sizes
        return adopt_mirror_sizes(cfg, meta)
    if backend != BART:  # a fine-tuned pretrained LM: record its base (and adapters)
        lora = dataclasses.replace(cfg.generator.lora, enabled=bool(meta.get("adapter")))
        cfg.generator = dataclasses.replace(cfg.generator, pretrained=meta["base"]["spec"], lora=lora)
    else:
        cfg.generator = dataclasses.replace(cfg.generator, **init_architecture(cfg.generator.init))
    return cfg


def save_policy(policy: Policy, folder: str | Path, data: DataConfig, base: dict[str, Any] | None = None) -> Path:
    """Write `policy` in its backend's checkpoint format (`base`: {spec, identity} of a pretrained
    LM's base model, recorded in its coral.json)."""
    if policy.kind == MIRROR:
        return save_mirror(policy, folder, data)  # type: ignore[arg-type]
    if policy.kind != BART:  # a pretrained LM (causal or seq2seq-lm)
        return save_lm_policy(policy, folder, data, base or {})
    return save_generator(policy.model, policy.tokenizer, folder, data)


def load_policy_weights(policy: Policy, folder: str | Path) -> None:
    """Resume: `folder`'s weights into the live `policy` in place, by the same rule as `save_policy`."""
    if policy.kind == MIRROR:
        load_mirror_weights(policy.model, folder)
    elif policy.kind != BART:
        load_lm_weights(policy, folder)
    else:
        load_generator_weights(policy.model, folder)


def _model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
