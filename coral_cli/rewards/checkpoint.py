"""Reward checkpoints: a folder with config.json, model.safetensors and the tokenizer. No pickle.

`load_reward` checks the folder really is a coral reward checkpoint of a known plugin, so a
generator checkpoint, a damaged file or a missing plugin is one clear error. A plain Hugging Face
sequence-classification folder (config.json `architectures` ending in ForSequenceClassification,
e.g. DialogRPT) also loads, wrapped by the `hf-classifier` plugin.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from coral_cli import __version__
from coral_cli.config.schema import RetrieverConfig
from coral_cli.config.typed import build
from coral_cli.errors import AssetError, ConfigError
from coral_cli.hub import hub_offline, is_hub_name, no_network
from coral_cli.registry import REWARDS
from coral_cli.rewards.base import RewardModel, SpecialIds
from coral_cli.tokenizer import load_tokenizer

FORMAT = "coral-reward"
FORMAT_VERSION = 1
HF_CLASSIFIER = "hf-classifier"  # the plugin that wraps a plain Hugging Face classifier folder


def plugin_args(cls: type[RewardModel], args: dict[str, Any], name: str) -> Any:
    """Validate `[retriever.args]` against the plugin's own `Args` dataclass."""
    errors: list[str] = []
    parsed = build(cls.Args, args, errors, "retriever.args")
    if errors:
        raise ConfigError(f"invalid options for reward model '{name}':\n" + "\n".join(f"  - {e}" for e in errors),
                          f"see the {cls.__name__}.Args fields")
    return parsed


def build_reward(cfg: RetrieverConfig, tokenizer_name: str) -> RewardModel:
    """A fresh reward model of plugin `cfg.model` (pretrained backbone per `cfg.backbone`)."""
    cls = REWARDS.get(cfg.model)
    tok = _tokenizer(cls, cfg.backbone if hasattr(cls, "load_own_tokenizer") else tokenizer_name)
    model = cls(cfg, plugin_args(cls, cfg.args, cfg.model), SpecialIds.of(tok), None)
    _attach(model, tok)
    return model


def _tokenizer(cls: type[RewardModel], name: str) -> Any:
    """The bundled-style BERT tokenizer, or the plugin's own (`load_own_tokenizer`, e.g. hf-classifier)."""
    own = getattr(cls, "load_own_tokenizer", None)
    return own(name) if own else load_tokenizer(name)


def _attach(model: RewardModel, tok: Any) -> None:
    attach = getattr(model, "attach", None)  # a plugin deriving its special ids from its own tokenizer
    if attach:
        attach(tok)
    else:
        model.tokenizer = tok


def save_reward(model: RewardModel, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write config.json + model.safetensors + tokenizer files into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.asdict(model.cfg)
    cfg.pop("train", None)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "coral_version": __version__,
        "model": model.cfg.model,
        "retriever": cfg,
        "args": dataclasses.asdict(model.args),
        "arch": model.arch(),
        **(extra or {}),
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(_dedupe_shared(state), str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(folder))
    return folder


def hub_folder(spec: str | Path) -> Path:
    """A local folder as it is; a hub name (`org/name`, e.g. microsoft/DialogRPT-updown) that is no
    local path: its downloaded snapshot (users with internet; offline, one clear error)."""
    folder = Path(spec)
    if folder.exists() or not is_hub_name(str(spec)):
        return folder
    from huggingface_hub import snapshot_download

    name, _, revision = str(spec).partition("@")
    try:
        return Path(snapshot_download(name, revision=revision or None, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.bin"]))
    except Exception as exc:  # the hub raises many error types; each becomes one message
        if no_network(exc) or hub_offline():
            raise AssetError(f"cannot download {spec}: no internet (or HF_HUB_OFFLINE=1)",
                             "download it where there is internet and pass the local folder") from None
        raise AssetError(f"cannot download {spec} from the Hugging Face hub: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                         "check the name (org/name) or pass a local folder") from None


def read_reward_meta(folder: str | Path) -> dict[str, Any]:
    """config.json of a reward checkpoint, checked to be one."""
    folder = hub_folder(folder)
    cfg_file = folder / "config.json"
    if not folder.is_dir() or not cfg_file.is_file():
        raise AssetError(f"not a checkpoint folder: {folder} (no config.json)",
                         "pass a folder written by 'coral retriever train', e.g. runs/<name>/checkpoints/best")
    try:
        meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AssetError(f"{cfg_file}: damaged JSON ({exc.msg})", "re-train or restore the checkpoint") from None
    if meta.get("format") != FORMAT and _is_hf_classifier(meta):
        return {"format": FORMAT, "model": HF_CLASSIFIER, "retriever": {"model": HF_CLASSIFIER, "backbone": str(folder)},
                "hf_folder": True}
    if meta.get("format") != FORMAT:
        kind = meta.get("format") or meta.get("model_type") or "unknown"
        raise AssetError(f"{folder} is not a reward-model checkpoint (it is '{kind}')",
                         "pass a checkpoint written by 'coral retriever train'")
    return meta


def load_reward(folder: str | Path, device: torch.device | str = "cpu") -> RewardModel:
    """Load a reward checkpoint (or a hub classifier by name) for scoring: eval mode, frozen, on `device`."""
    folder = hub_folder(folder)
    meta = read_reward_meta(folder)
    cls = REWARDS.get(meta["model"])
    errors: list[str] = []
    cfg = build(RetrieverConfig, meta["retriever"], errors)
    if errors:
        raise AssetError(f"{folder}/config.json does not fit this coral version: {'; '.join(errors)}",
                         "re-train the retriever with this version")
    tok = _tokenizer(cls, str(folder))
    arch = None if meta.get("hf_folder") else meta.get("arch", {})  # a plain HF folder loads its own weights
    model = cls(cfg, plugin_args(cls, meta.get("args", {}), meta["model"]), SpecialIds.of(tok), arch)
    _attach(model, tok)
    if arch is not None:
        load_weights(model, folder)
    model.to(device).eval().requires_grad_(False)
    return model


def _is_hf_classifier(meta: dict[str, Any]) -> bool:
    """A plain Hugging Face sequence-classification folder (e.g. DialogRPT), scored by 'hf-classifier'."""
    archs = meta.get("architectures") or []
    return isinstance(archs, list) and any(str(a).endswith("ForSequenceClassification") for a in archs)


def load_weights(model: RewardModel, folder: Path) -> None:
    """model.safetensors -> `model`, strictly; a damaged or mismatched file is an `AssetError`."""
    try:
        state = load_file(str(folder / "model.safetensors"))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise AssetError(f"{folder}/model.safetensors is missing or damaged: {exc}",
                         "re-train or restore the checkpoint") from None
    own = model.state_dict()
    for key, tensor in state.items():
        if key in own and tensor.shape != own[key].shape:  # load_state_dict would raise a bare RuntimeError
            raise AssetError(f"{folder}/model.safetensors: tensor '{key}' has shape {tuple(tensor.shape)}, but the "
                             f"'{model.cfg.model}' architecture in config.json needs {tuple(own[key].shape)}",
                             "re-train or restore the checkpoint (its weights and config.json do not match)")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not _is_tied(model, k, state)]
    if missing or unexpected:
        raise AssetError(f"{folder}/model.safetensors does not match the '{model.cfg.model}' architecture "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})", "use the checkpoint's own plugin version")


def _dedupe_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory: keep the first name of each storage."""
    seen: dict[tuple[int, int], str] = {}
    out = {}
    for key, value in state.items():
        ident = (value.untyped_storage().data_ptr(), value.storage_offset())
        if ident in seen:
            continue
        seen[ident] = key
        out[key] = value
    return out


def _is_tied(model: RewardModel, key: str, state: dict[str, torch.Tensor]) -> bool:
    params = dict(model.named_parameters(remove_duplicate=False))
    if key not in params:
        return False
    return any(params.get(k) is params[key] for k in state)
