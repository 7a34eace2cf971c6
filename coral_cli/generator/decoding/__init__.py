"""Decoding for any Hugging Face model: `generate` arguments, nucleus sampling, per-step log-probs."""
