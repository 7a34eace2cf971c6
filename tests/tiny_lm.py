"""A tiny chat LM built in code (no downloads): a 2-layer Llama over the bundled WordPiece
vocabulary, with [SEP] as eos and a minimal chat template."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from coral_cli.tokenizer import load_tokenizer

CHAT = ("{% for m in messages %}{{ m.role }} : {{ m.content }} [SEP] {% endfor %}"
        "{% if add_generation_prompt %}assistant :{% endif %}")


def chat_tokenizer(template: str | None = CHAT):
    """A fresh copy of the bundled tokenizer with eos = [SEP] (and the chat template, if given)."""
    tok = load_tokenizer("bundled").__class__.from_pretrained(load_tokenizer("bundled").name_or_path)
    tok.eos_token = "[SEP]"
    if template:
        tok.chat_template = template
    return tok


def tiny_llama(tok, max_positions: int = 128) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2,
                                        max_position_embeddings=max_positions, pad_token_id=tok.pad_token_id,
                                        eos_token_id=tok.eos_token_id))


def save_tiny_llama(folder: Path, max_positions: int = 128) -> Path:
    """The tiny chat LM as a plain Hugging Face folder (what `generator.pretrained` takes)."""
    tok = chat_tokenizer()
    tiny_llama(tok, max_positions).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
