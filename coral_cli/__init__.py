"""coral: train dialogue response generators with the CORAL loss (Santra et al.)."""

__version__ = "0.1.0"
