"""The seq2seq response generator: model, checkpoints, batches, log-probabilities."""
