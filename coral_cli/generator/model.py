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

from coral_cli import __version__
from coral_cli.config.schema import DataConfig, GeneratorConfig
from coral_cli.errors import AssetError
from coral_cli.tokenizer import load_tokenizer

FORMAT = "coral-generator"
META_FILE = "coral.json"


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
    """`save_pretrained` + tokenizer + coral.json (the data budgets the model was trained with)."""
    folder = Path(folder)
    model.save_pretrained(str(folder), safe_serialization=True)
    tok.save_pretrained(str(folder))
    meta = {"format": FORMAT, "coral_version": __version__, "data": dataclasses.asdict(data), **(extra or {})}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return folder


def load_generator(folder: str | Path, device: torch.device | str = "cpu") -> tuple[BartForConditionalGeneration, PreTrainedTokenizerBase, dict[str, Any]]:
    """(model in eval mode on `device`, tokenizer, coral.json); foreign folders are clear errors."""
    folder = Path(folder)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise AssetError(f"not a checkpoint folder: {folder} (no config.json)",
                         "pass a generator checkpoint, e.g. runs/<name>/checkpoints/best")
    meta_file = folder / META_FILE
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.exists() else {}
    except json.JSONDecodeError as exc:
        raise AssetError(f"{folder}: damaged JSON ({exc.msg})", "re-train or restore the checkpoint") from None
    if config.get("format") == "coral-reward":
        raise AssetError(f"{folder} is a reward-model checkpoint, not a generator",
                         "pass a checkpoint written by 'coral coral train'")
    if config.get("model_type") != "bart":
        raise AssetError(f"{folder} is not a generator checkpoint (model_type {config.get('model_type')!r})",
                         "pass a checkpoint written by 'coral coral train'")
    try:
        model = BartForConditionalGeneration.from_pretrained(str(folder))
    except Exception as exc:  # damaged safetensors raise library-specific errors
        raise AssetError(f"{folder}: cannot load the weights: {str(exc).splitlines()[0]}",
                         "re-train or restore the checkpoint") from None
    tok = load_tokenizer(str(folder))
    return model.to(device).eval(), tok, meta
