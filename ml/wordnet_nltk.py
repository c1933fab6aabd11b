"""nltk's WordNet reader pointed at Debian's ``wordnet-base`` folder (ml/wordnet.py).

Kept apart so that importing ml.wordnet does not import nltk (3.2 s, ~130 MB).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import nltk.data
from nltk.corpus.reader.wordnet import WordNetCorpusReader

# Debian's wordnet-base leaves out ``lexnames`` (the lexicographer file names,
# fixed since WordNet 2.0), which nltk reads on start-up; this is its content.
_LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
_LEX_POS = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


class DebianWordNetReader(WordNetCorpusReader):
    """nltk's reader, fed the two things Debian's folder lacks."""

    def open(self, file: str) -> Any:
        if file == "lexnames":
            return io.StringIO("".join(f"{i:02d}\t{n}\t{_LEX_POS[n.split('.')[0]]}\n" for i, n in enumerate(_LEXNAMES)))
        return super().open(file)

    def map_wn(self, version: str = "wordnet") -> None:
        # The mapping to nltk's own WordNet copy needs nltk_data; this folder *is* 3.0.
        return None


def open_debian_wordnet(root: Path) -> WordNetCorpusReader:
    # nltk only opens files under its data path; allow exactly this folder.
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available"
        return DebianWordNetReader(str(root), None)
