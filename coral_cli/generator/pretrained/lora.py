"""LoRA adapters (peft) on a pretrained LM: train small low-rank updates and keep the base frozen.

Fine-tuning a pretrained LM with CORAL's REINFORCE loss moves every weight by default; LoRA keeps
the base intact, so the adapter is a few MB, the base doubles as the KL reference with adapters
off (`core.reference.reference_model`), and `merge_and_export` folds the update back into a plain HF model.

On disk an adapter is peft's folder (adapter_config.json + adapter_model.safetensors, never a
pickle) plus coral-adapter.json: the identity of the base it was trained on, so it is never
applied to another base, and the `[generator.lora]` section it was trained with.
Note: peft adapts models in place: `add_lora` and `load_adapter` change the model they are given.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from coral_cli import __version__
from coral_cli.atomic import atomic_directory
from coral_cli.config.schema import LoraConfig
from coral_cli.errors import AssetError, ConfigError
from coral_cli.generator.core.checkpoint import check_weights, read_weights

FORMAT = "coral-lora-adapter"
META_FILE = "coral-adapter.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_CONFIG_FILE = "adapter_config.json"
ALL_LINEAR = "all-linear"


def linear_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every layer LoRA can adapt here: nn.Linear and transformers' Conv1D (GPT-2), by full name."""
    from transformers.pytorch_utils import Conv1D

    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))}


def _matches(target: str, name: str) -> bool:
    """peft's rule for a list entry: the full module name, or a suffix of it at a '.' boundary."""
    return name == target or name.endswith("." + target)


def _tied_head(model: nn.Module) -> str | None:
    """The name of an output layer that shares its weight with the input embeddings, if any."""
    get_out, get_in = getattr(model, "get_output_embeddings", None), getattr(model, "get_input_embeddings", None)
    out, inp = (get_out(), get_in()) if get_out and get_in else (None, None)
    if out is None or inp is None or getattr(out, "weight", None) is not getattr(inp, "weight", None):
        return None
    return next(name for name, m in model.named_modules() if m is out)


def _check_targets(model: nn.Module, targets: list[str]) -> None:
    """Every named target must be a linear layer of `model`; an output layer tied to the input
    embeddings is refused (merging would change the embeddings too)."""
    linear = linear_modules(model)
    suffixes = ", ".join(sorted({name.rsplit(".", 1)[-1] for name in linear}))
    missing = [t for t in targets if not any(_matches(t, name) for name in linear)]
    if missing:
        raise ConfigError(f"generator.lora.target_modules: {missing} match no linear layer of "
                          f"{type(model).__name__}",
                          f"use ['all-linear'] or names among the model's linear layers: {suffixes}")
    tied = _tied_head(model)
    if tied and any(_matches(t, tied) for t in targets):
        raise ConfigError(f"generator.lora.target_modules: '{tied}' shares its weight with the input "
                          "embeddings (tied), so an adapter on it would change both",
                          f"drop '{tied.rsplit('.', 1)[-1]}' from target_modules")


def peft_config(model: nn.Module, cfg: LoraConfig) -> Any:
    """The `peft.LoraConfig` that `add_lora` applies for `cfg`: also what trl's trainers take, so
    a comparison (`coral bench`) trains the same adapters."""
    import peft
    from transformers.pytorch_utils import Conv1D

    if cfg.target_modules == [ALL_LINEAR]:
        targets: Any = ALL_LINEAR  # peft resolves it: every linear layer but the output head
    else:
        _check_targets(model, cfg.target_modules)
        targets = list(cfg.target_modules)
    seq2seq = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    return peft.LoraConfig(
        task_type=peft.TaskType.SEQ_2_SEQ_LM if seq2seq else peft.TaskType.CAUSAL_LM,
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets, bias="none",
        # GPT-2's Conv1D stores (in, out) weights; peft would flip this itself, with a warning per layer
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),
    )


def _get_peft_model(model: nn.Module, config: Any) -> Any:
    import peft

    with warnings.catch_warnings():  # peft 0.21 reads a property transformers 5 deprecated
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return peft.get_peft_model(model, config)


def _check_only_adapters_train(model: nn.Module) -> None:
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    stray = [n for n in trainable if "lora_" not in n]
    if stray or not trainable:
        raise RuntimeError(f"LoRA model trains {len(trainable)} tensors, non-adapter ones: {stray[:5]}")


def add_lora(model: nn.Module, cfg: LoraConfig) -> Any:
    """Wrap `model` (in place) in LoRA adapters per `cfg`: a PeftModel whose only trainable
    parameters are the adapters' (lora_B starts at 0, so outputs start equal to the base's)."""
    import peft

    if isinstance(model, peft.PeftModel):
        raise ValueError("model already has adapters")
    wrapped = _get_peft_model(model, peft_config(model, cfg))
    _check_only_adapters_train(wrapped)
    wrapped.coral_lora = dataclasses.replace(cfg)  # what save_adapter records
    return wrapped


def _lora_of(model: Any) -> dict[str, Any]:
    cfg = getattr(model, "coral_lora", None)
    if isinstance(cfg, LoraConfig):
        return dataclasses.asdict(cfg)
    pc = model.peft_config["default"]  # loaded elsewhere: rebuild from peft's resolved config
    targets = pc.target_modules if isinstance(pc.target_modules, str) else sorted(pc.target_modules)
    return {"enabled": True, "r": pc.r, "alpha": pc.lora_alpha, "dropout": pc.lora_dropout,
            "target_modules": [targets] if isinstance(targets, str) else targets}


def _plain(identity: dict[str, Any]) -> dict[str, Any]:
    """`identity` as it reads back from JSON, so saved and given identities compare equal."""
    try:
        return json.loads(json.dumps(identity, sort_keys=True))
    except TypeError as exc:
        raise ValueError(f"base_identity must be JSON-serialisable: {exc}") from None


def save_adapter(model: Any, folder: str | Path, base_identity: dict[str, Any]) -> Path:
    """Write the adapters (safetensors) + coral-adapter.json recording `base_identity` (an opaque
    dict from the caller, e.g. base name + fingerprint) and the LoRA settings; atomically."""
    folder = Path(folder)
    meta = {"format": FORMAT, "coral_version": __version__, "base": _plain(base_identity),
            "lora": _lora_of(model)}
    with atomic_directory(folder) as tmp:
        # save_embedding_layers=False: no embedding is adapted, and "auto" may look the base up online
        model.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=False)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return folder


def is_adapter(folder: str | Path) -> bool:
    """Whether `folder` holds a LoRA adapter (coral's or a bare peft one) rather than a full model."""
    folder = Path(folder)
    return (folder / META_FILE).is_file() or (folder / PEFT_CONFIG_FILE).is_file()


def read_adapter_meta(folder: str | Path) -> dict[str, Any]:
    """coral-adapter.json of an adapter folder: {format, coral_version, base, lora}; checked."""
    folder = Path(folder)
    path = folder / META_FILE
    if not path.is_file():
        what = "a peft adapter not written by coral" if (folder / PEFT_CONFIG_FILE).is_file() else "not an adapter"
        raise AssetError(f"{folder} is {what} (no {META_FILE}), so its base model is unknown",
                         "pass an adapter folder written by coral (a LoRA run's checkpoint)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AssetError(f"{path}: damaged JSON ({exc})", "re-train or restore the adapter") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("base"), dict):
        raise AssetError(f"{path} is not a coral adapter record", "re-train or restore the adapter")
    return meta


def _describe(identity: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in identity.items()) or "{}"


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    return read_weights(check_weights(folder, WEIGHTS_FILE), "restore the adapter or train it again")


def load_adapter(base_model: nn.Module, folder: str | Path, base_identity: dict[str, Any], *,
                 trainable: bool = False) -> Any:
    """`base_model` (changed in place) with the adapter in `folder`: refused unless it was trained
    on the base `base_identity` names; pickled, damaged or mismatched weights are an AssetError."""
    import peft

    folder = Path(folder)
    meta = read_adapter_meta(folder)
    if meta["base"] != _plain(base_identity):
        raise AssetError(f"{folder} was trained on another base model ({_describe(meta['base'])}); "
                         f"this base is {_describe(_plain(base_identity))}",
                         f"load the adapter onto the base it needs ({_describe(meta['base'])}), "
                         "or train an adapter for this base")
    state = _read_weights(folder)
    try:
        pc = peft.LoraConfig.from_pretrained(str(folder))
    except Exception as exc:
        raise AssetError(f"{folder}/{PEFT_CONFIG_FILE} is missing or damaged: {str(exc).splitlines()[0]}",
                         "restore the adapter or train it again") from None
    pc.inference_mode = not trainable
    model = _get_peft_model(base_model, pc)
    try:
        result = peft.set_peft_model_state_dict(model, state)
    except RuntimeError as exc:  # shape mismatch
        raise AssetError(f"{folder}: adapter does not fit this base: {str(exc).splitlines()[0]}",
                         "load the adapter onto the base it was trained on") from None
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise AssetError(f"{folder}: adapter does not fit this base ({len(missing)} missing, "
                         f"{len(result.unexpected_keys)} unexpected tensors, e.g. "
                         f"{(missing + list(result.unexpected_keys))[0]})",
                         "load the adapter onto the base it was trained on")
    if trainable:
        _check_only_adapters_train(model)
    model.coral_lora = LoraConfig(**meta["lora"]) if isinstance(meta.get("lora"), dict) else None
    return model


def merge_and_export(model: Any, tokenizer: Any, folder: str | Path) -> Path:
    """Fold the adapters into a copy of the base and save it as a plain HF folder (safetensors) that
    AutoModelForCausalLM / AutoModelForSeq2SeqLM load without peft; `model` keeps its adapters."""
    folder = Path(folder)
    merged = copy.deepcopy(model).merge_and_unload()
    with atomic_directory(folder) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
    return folder
