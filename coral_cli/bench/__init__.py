"""`coral bench`: speed of each stage, measured side by side on the same model sizes and data."""
