"""METEOR with nltk's `meteor_score` and real WordNet 3.0 data.

nltk's downloader cannot run offline, so WordNet comes from, in order: $CORAL_WORDNET (a folder
of WordNet 3.0 dict files), nltk_data's corpora/wordnet, or Debian's `wordnet-base` package
(/usr/share/wordnet, which scripts/bootstrap.sh installs). Debian's copy lacks the small
`lexnames` index nltk opens first; its fixed 45 lines (WordNet 3.0 lexnames(5WN)) are written
into a cache folder beside copies of the data files (~30 MB, once). No WordNet is a clear error, never a 0.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from coral_cli.errors import AssetError
from coral_cli.metrics.lexical import words

DEBIAN = Path("/usr/share/wordnet")
LEXNAMES = [
    "adj.all 3", "adj.pert 3", "adv.all 4", "noun.Tops 1", "noun.act 1", "noun.animal 1", "noun.artifact 1",
    "noun.attribute 1", "noun.body 1", "noun.cognition 1", "noun.communication 1", "noun.event 1",
    "noun.feeling 1", "noun.food 1", "noun.group 1", "noun.location 1", "noun.motive 1", "noun.object 1",
    "noun.person 1", "noun.phenomenon 1", "noun.plant 1", "noun.possession 1", "noun.process 1",
    "noun.quantity 1", "noun.relation 1", "noun.shape 1", "noun.state 1", "noun.substance 1", "noun.time 1",
    "verb.body 2", "verb.change 2", "verb.cognition 2", "verb.communication 2", "verb.competition 2",
    "verb.consumption 2", "verb.contact 2", "verb.creation 2", "verb.emotion 2", "verb.motion 2",
    "verb.perception 2", "verb.possession 2", "verb.social 2", "verb.stative 2", "verb.weather 2", "adj.ppl 3",
]
FIX = "apt-get install wordnet-base (Debian/Ubuntu), or point $CORAL_WORDNET at a WordNet 3.0 dict folder"


def wordnet_folder() -> Path:
    """A folder nltk's WordNetCorpusReader can open."""
    env = os.environ.get("CORAL_WORDNET")
    candidates = [Path(env)] if env else []
    import nltk

    candidates += [Path(p) / "corpora" / "wordnet" for p in nltk.data.path]
    for folder in candidates:
        if (folder / "lexnames").is_file() and (folder / "data.noun").is_file():
            if env and str(folder.parent.parent) not in nltk.data.path:
                nltk.data.path.append(str(folder.parent.parent))
            return folder
    source = Path(env) if env else DEBIAN
    if not (source / "data.noun").is_file():
        raise AssetError("METEOR needs WordNet 3.0 and none was found", FIX)
    from coral_cli.data.encode import cache_dir
    from coral_cli.config.schema import DataConfig

    root = cache_dir(DataConfig()) / "nltk_data"  # nltk only opens corpora under nltk.data.path
    folder = root / "corpora" / "wordnet"
    folder.mkdir(parents=True, exist_ok=True)
    import nltk

    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    for f in source.iterdir():  # copies: nltk refuses links that leave its data roots
        target = folder / f.name
        if f.is_file() and not target.exists():
            shutil.copyfile(f, target)
    lex = folder / "lexnames"
    if not lex.exists():
        lex.write_text("".join(f"{i:02d}\t{name.split()[0]}\t{name.split()[1]}\n" for i, name in enumerate(LEXNAMES)))
    return folder


@lru_cache(maxsize=1)
def load_wordnet():
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    folder = wordnet_folder()
    try:
        with warnings.catch_warnings():  # "multilingual functions are not available": not used here
            warnings.simplefilter("ignore")
            reader = WordNetCorpusReader(str(folder), None)
        reader.synsets("dog")
    except Exception as exc:  # a damaged dict folder
        raise AssetError(f"cannot read WordNet at {folder}: {exc}", FIX) from None
    return reader


def meteor(predictions: Sequence[str], references: Sequence[str]) -> tuple[float, dict]:
    """Mean sentence METEOR (nltk defaults: alpha 0.9, beta 3, gamma 0.5, Porter stemmer)."""
    values, settings = meteor_items(predictions, references)
    return sum(values) / max(1, len(values)), settings


def meteor_items(predictions: Sequence[str], references: Sequence[str]) -> tuple[list[float], dict]:
    """Each response's sentence METEOR, and the settings used."""
    from nltk.translate.meteor_score import meteor_score

    wn = load_wordnet()
    values = [meteor_score([words(r)], words(p), wordnet=wn) for p, r in zip(predictions, references)]
    settings = {"implementation": "nltk.translate.meteor_score", "wordnet": str(wordnet_folder()),
                "wordnet_version": wn.get_version(), "tokenize": "lowercase + whitespace"}
    return values, settings
