"""The Mirror baseline (an LSTM CVAE): its model, policy, decoding and checkpoints."""
