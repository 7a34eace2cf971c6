"""What every generator backend shares: the `Policy` contract, batches, log-probs, the scored LM
head, checkpoint I/O (coral.json, safetensors, tokenizer files) and the KL reference."""
