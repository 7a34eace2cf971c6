"""Checkpoints of fine-tuned pretrained LMs: coral.json names the backend and the base model
(its spec and identity); the weights are a LoRA adapter (safetensors, loaded onto the same base)
or a whole model (`save_pretrained`, safetensors). Tokenizer files travel with both, so generate,
chat, evaluate, `--init` and resume load the policy from the folder alone."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from coral_cli.config.schema import DataConfig
from coral_cli.errors import AssetError
from coral_cli.generator.core.checkpoint import check_weights, read_meta, read_weights, write_meta
from coral_cli.generator.core.policy import Policy
from coral_cli.generator.pretrained.causal import CausalPolicy
from coral_cli.generator.pretrained.lora import WEIGHTS_FILE as ADAPTER_FILE
from coral_cli.generator.pretrained.lora import load_adapter, read_adapter_meta, save_adapter
from coral_cli.generator.pretrained.seq2seq_lm import PretrainedSeq2SeqPolicy
from coral_cli.generator.pretrained.sources import load_lm, resolve_lm


def save_lm_policy(policy: Policy, folder: str | Path, data: DataConfig, base: dict[str, Any]) -> Path:
    """Adapters (or the whole model) + tokenizer + coral.json into `folder` (an atomic temp folder)."""
    folder = Path(folder)
    adapter = hasattr(policy.model, "peft_config")
    if adapter:
        save_adapter(policy.model, folder, base["identity"])
    else:
        policy.model.save_pretrained(str(folder), safe_serialization=True)
    policy.tokenizer.save_pretrained(str(folder))
    write_meta(folder, {"backend": policy.kind, "base": base, "adapter": adapter, "data": dataclasses.asdict(data)})
    return folder


def check_resume_base(folder: str | Path) -> None:
    """Refuse to resume a LoRA checkpoint whose base model changed since it was saved (as generate,
    chat and export refuse to load it): training on would fit the adapters to another model and
    record the new base in last/ and best/. Reads the base's fingerprint only, no weights."""
    folder = Path(folder)
    meta = read_meta(folder)
    base = meta.get("base")
    spec = base.get("spec") if isinstance(base, dict) else None
    if not meta.get("adapter") or not spec:
        return
    saved = read_adapter_meta(folder)["base"]
    now = json.loads(json.dumps(resolve_lm(spec).identity))
    if "commit" not in now:  # a hub model's commit is pinned on download: compare the rest
        saved = {k: v for k, v in saved.items() if k != "commit"}
    if saved != now:
        raise AssetError(f"cannot resume {folder}: its LoRA adapters were trained on another version of {spec} "
                         f"({_show(saved)}); it is now {_show(now)}",
                         "put back the base model the run was trained on, or start a new run with --name NEW")


def _show(identity: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in identity.items())


def load_lm_policy(folder: str | Path, device: torch.device | str, meta: dict[str, Any],
                   trainable: bool = False) -> Policy:
    """The fine-tuned LM of `folder`: its base loaded again plus the adapter, or the whole model;
    coral.json's "backend" says which policy class (causal or seq2seq-lm) wraps it."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    folder = Path(folder)
    seq2seq = meta.get("backend") == PretrainedSeq2SeqPolicy.kind
    if meta.get("adapter"):
        base, _, source = load_lm(meta["base"]["spec"], device, "seq2seq" if seq2seq else "causal")
        model = load_adapter(base, folder, source.identity, trainable=trainable)
    else:
        if not (folder / "model.safetensors").is_file() and not list(folder.glob("model-*.safetensors")):
            raise AssetError(f"{folder} has no model.safetensors", "coral loads safetensors checkpoints only")
        try:
            auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
            model = auto.from_pretrained(str(folder), use_safetensors=True)
        except Exception as exc:  # damaged weights raise library-specific errors
            raise AssetError(f"{folder}: cannot load the weights: {str(exc).splitlines()[0]}",
                             "re-train or restore the checkpoint") from None
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise AssetError(f"{folder} has no usable tokenizer files: {str(exc).splitlines()[0]}",
                         "copy the run's tokenizer files back into the folder") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.to(device)
    model.train(trainable)
    return PretrainedSeq2SeqPolicy(model, tok) if seq2seq else CausalPolicy(model, tok)


def load_lm_weights(policy: Policy, folder: str | Path) -> None:
    """Resume: put `folder`'s adapter (or whole-model) weights into the live policy in place."""
    from peft import set_peft_model_state_dict

    folder = Path(folder)
    adapter = hasattr(policy.model, "peft_config")
    weights = check_weights(folder, ADAPTER_FILE if adapter else "model.safetensors")
    state = read_weights(weights, "restore the checkpoint, or start the run again under another --name")
    if adapter:
        set_peft_model_state_dict(policy.model, state)
    else:
        policy.model.load_state_dict(state, strict=False)
