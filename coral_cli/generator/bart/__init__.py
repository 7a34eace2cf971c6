"""The paper's generator (§4.1): a randomly initialised BART over WordPiece, and AdaLabel's
auxiliary decoder beside it."""
