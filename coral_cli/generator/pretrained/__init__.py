"""Pretrained LMs (causal and seq2seq) loaded by name, GGUF, folder or hub; LoRA adapters; their
checkpoints."""
