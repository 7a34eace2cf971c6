"""The one training loop (retriever and generator alike): batching, optimisation, checkpoints."""
