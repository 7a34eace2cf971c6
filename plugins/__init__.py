"""coral's built-in plugins, installed as the package `coral_plugins` and registered through
entry points (`coral.rewards`, `coral.samplers`) exactly like a third-party plugin."""
