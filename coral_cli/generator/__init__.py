"""The response generator, in layers (docs/architecture.md):

decoding/  sampling and nucleus decoding, step log-probs (no coral model knowledge)
core/      the `Policy` contract, batches, log-probs, checkpoint I/O, the KL reference
bart/ pretrained/ mirror/   the backends: each imports only core/ and decoding/
loading.py the one module that knows every backend (load a checkpoint folder, a zero-shot LM)
"""
