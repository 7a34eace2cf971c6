"""Batched, KV-cached response generation: greedy, beam and nucleus decoding."""
