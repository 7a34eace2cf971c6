"""Data: dialogues -> (context, response) pairs -> cached token ids; the utterance pool."""

from coral_cli.data.encode import encode_pairs
from coral_cli.data.sources import load_dialogues, load_pairs, resolve_source, utterance_pool

__all__ = ["encode_pairs", "load_dialogues", "load_pairs", "resolve_source", "utterance_pool"]
