"""Built-in CORAL candidate samplers: positive, random (RandomNegative), nucleus (on-policy)."""
