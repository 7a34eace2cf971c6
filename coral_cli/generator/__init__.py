"""The seq2seq response generator: model, batches, log-probabilities, training task."""
