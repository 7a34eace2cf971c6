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


def full_and_resumed(cfg, tmp_path, kill_at: int):
    """Train `cfg` straight through (run 'full') and again killed after step `kill_at` then
    resumed (run 'killed'): (full, killed, the resumed run's final loop state)."""
    import pytest

    from coral_cli.runs import run_dir
    from coral_cli.tasks.train import train_generator
    from coral_cli.training.events import StepEnd

    full = run_dir(tmp_path, "full")
    train_generator(cfg, full, [])

    def kill(event):
        if isinstance(event, StepEnd) and event.step == kill_at:
            raise KeyboardInterrupt

    killed = run_dir(tmp_path, "killed")
    with pytest.raises(KeyboardInterrupt):
        train_generator(cfg, killed, [kill])
    return full, killed, train_generator(cfg, killed, [], resume=True)
