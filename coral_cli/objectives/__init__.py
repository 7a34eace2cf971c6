"""Generator training objectives: each maps (model, batch) -> (loss, detached stats)."""
