"""The generator: a transformer encoder-decoder (transformers' BART classes built from config,
randomly initialised) over the BERT WordPiece vocabulary (paper §4.1).

Checkpoints are Hugging Face format (`save_pretrained`: config.json, model.safetensors,
tokenizer files) plus `coral.json`, so `BartForConditionalGeneration.from_pretrained(dir)` loads
them directly.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerBase

from coral_cli.config.schema import DataConfig, GeneratorConfig
from coral_cli.errors import AssetError
from coral_cli.generator.bart.aux_decoder import aux_decoder, load_aux_weights, save_aux_weights, split_state
from coral_cli.generator.core.checkpoint import check_finite, check_tokenizer_files, check_weights, read_meta, read_weights, write_meta
from coral_cli.generator.core.policy import Policy, Seq2SeqPolicy
from coral_cli.tokenizer import load_tokenizer


def build_generator(cfg: GeneratorConfig, tok: PreTrainedTokenizerBase) -> BartForConditionalGeneration:
    """A randomly initialised encoder-decoder of the configured size ([CLS] starts, [SEP] ends)."""
    config = BartConfig(
        vocab_size=len(tok), d_model=cfg.d_model,
        encoder_layers=cfg.encoder_layers, decoder_layers=cfg.decoder_layers,
        encoder_attention_heads=cfg.heads, decoder_attention_heads=cfg.heads,
        encoder_ffn_dim=cfg.ffn_dim, decoder_ffn_dim=cfg.ffn_dim,
        dropout=cfg.dropout, attention_dropout=cfg.dropout, activation_dropout=0.0,
        max_position_embeddings=cfg.max_positions,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.cls_token_id, forced_bos_token_id=None, forced_eos_token_id=None,
    )
    return BartForConditionalGeneration(config)


def save_generator(model: BartForConditionalGeneration, tok: PreTrainedTokenizerBase, folder: str | Path,
                   data: DataConfig, extra: dict[str, Any] | None = None) -> Path:
    """`save_pretrained` + tokenizer + coral.json (the data budgets the model was trained with);
    an AdaLabel auxiliary decoder goes beside the plain BART files, into its own file."""
    folder = Path(folder)
    aux = aux_decoder(model) is not None
    state = split_state(model.state_dict())[0] if aux else None
    model.save_pretrained(str(folder), safe_serialization=True, state_dict=state)
    save_aux_weights(model, folder)
    tok.save_pretrained(str(folder))
    write_meta(folder, {"data": dataclasses.asdict(data), **(extra or {})})
    return folder


# GeneratorConfig field -> BartConfig key: the architecture an --init checkpoint fixes
ARCH_KEYS = {"encoder_layers": "encoder_layers", "decoder_layers": "decoder_layers", "d_model": "d_model",
             "heads": "encoder_attention_heads", "ffn_dim": "encoder_ffn_dim",
             "max_positions": "max_position_embeddings"}


def read_generator_config(folder: str | Path) -> dict[str, Any]:
    """config.json of a generator checkpoint, checked to be one (no weights are read)."""
    folder = Path(folder)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise AssetError(f"not a checkpoint folder: {folder} (no config.json)",
                         "pass a generator checkpoint, e.g. runs/<name>/checkpoints/best")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AssetError(f"{folder}/config.json: damaged JSON ({exc})", "re-train or restore the checkpoint") from None
    if not isinstance(config, dict):
        raise AssetError(f"{folder}/config.json is not a JSON object", "re-train or restore the checkpoint")
    if config.get("format") == "coral-reward":
        raise AssetError(f"{folder} is a reward-model checkpoint, not a generator checkpoint",
                         "pass a checkpoint written by 'coral coral train'")
    if config.get("model_type") != "bart":
        raise AssetError(f"{folder} is not a generator checkpoint (model_type {config.get('model_type')!r})",
                         "pass a checkpoint written by 'coral coral train'")
    return config


def init_architecture(folder: str | Path) -> dict[str, int]:
    """The `[generator]` sizes of an --init checkpoint, so the run records the model it trains."""
    config = read_generator_config(folder)
    return {key: int(config[hf]) for key, hf in ARCH_KEYS.items() if hf in config}


def load_generator_weights(model: BartForConditionalGeneration, folder: str | Path) -> None:
    """Load a checkpoint's safetensors weights into `model` in place (resume), its AdaLabel
    auxiliary decoder too if it has one: missing, misshapen or non-finite tensors are an `AssetError`."""
    folder = Path(folder)
    state = read_weights(check_weights(folder))
    check_finite(state, folder)
    own = split_state(model.state_dict())[0]
    tied = {k for k in own if k not in state and k in ("lm_head.weight", "model.encoder.embed_tokens.weight",
                                                        "model.decoder.embed_tokens.weight")}
    missing = sorted(set(own) - set(state) - tied)
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if k in own and v.shape != own[k].shape]
    if missing or wrong:
        what = f"missing {', '.join(missing[:3])}" if missing else f"wrong shape {'; '.join(wrong[:3])}"
        raise AssetError(f"{folder} does not fit this model ({what})",
                         "resume with the config the run was started with, or pass a matching checkpoint")
    model.load_state_dict(state, strict=False)
    if aux_decoder(model) is not None:
        load_aux_weights(model, folder)


def load_generator(folder: str | Path, device: torch.device | str = "cpu") -> tuple[BartForConditionalGeneration, PreTrainedTokenizerBase, dict[str, Any]]:
    """(model in eval mode on `device`, tokenizer, coral.json); foreign, pickled, damaged or
    diverged (NaN) checkpoints and folders without tokenizer files are clear errors."""
    folder = Path(folder)
    read_generator_config(folder)
    check_weights(folder)
    check_tokenizer_files(folder, "copy the tokenizer files of the run back into the folder, "
                                  "or re-save it with 'coral coral train'")
    meta = read_meta(folder)
    try:
        model = BartForConditionalGeneration.from_pretrained(str(folder), use_safetensors=True)
    except Exception as exc:  # damaged safetensors raise library-specific errors
        raise AssetError(f"{folder}: cannot load the weights: {str(exc).splitlines()[0]}",
                         "re-train or restore the checkpoint") from None
    check_finite(model.state_dict(), folder)
    tok = load_tokenizer(str(folder))
    return model.to(device).eval(), tok, meta


def load_bart_policy(folder: str | Path, device: torch.device | str = "cpu", trainable: bool = False) -> tuple[Policy, dict[str, Any]]:
    """The paper's BART of `folder` behind the generator contract, in eval mode unless `trainable`."""
    model, tok, meta = load_generator(folder, device)
    return Seq2SeqPolicy(model.train(trainable), tok), meta
