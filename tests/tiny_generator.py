"""A tiny generator recipe (2+2 layers, d=64) for fast CPU tests."""

TINY_GENERATOR = """
[data]
max_pairs = 32
max_context_tokens = 48
max_response_tokens = 24

[generator]
encoder_layers = 2
decoder_layers = 2
d_model = 64
heads = 2
ffn_dim = 128
dropout = 0.0
max_positions = 96
eval_pairs = 8

[train]
lr = 3e-3
warmup_steps = 10
max_epochs = 1000
max_steps = 240
batch_tokens = 8192
max_batch_size = 32
log_every = 8
eval_every = 80
save_epochs = 1000
patience = 0

[objective]
loss = "ce"

[generate]
strategy = "greedy"
max_new_tokens = 30
"""


def write_recipe(tmp_path, extra: str = "") -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_GENERATOR + extra)
    return str(path)
