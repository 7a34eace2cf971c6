"""Built-in response retrievers: bert (cross-encoder), esim, dmi (dual encoder)."""
