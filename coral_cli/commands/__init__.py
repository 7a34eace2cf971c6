"""The `coral` command line: thin Typer clients of the core library (one sub-app per file)."""
