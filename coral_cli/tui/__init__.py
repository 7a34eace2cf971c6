"""Textual front ends (a thin client of the core)."""
