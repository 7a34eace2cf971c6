"""Table recipes: the stages that reproduce one results table of the paper, run like `make`."""
