"""Live chat with a trained generator and inspection of its rewards (core; the TUI is a client)."""
