"""What a query wants more of and less of, beyond its words and photo: example products,
example photos and words to avoid (docs/search.md, "More like this, less like that").

Pure pieces only (no database): catalog/search.py turns them into ranked lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

QueryVectors = dict[str, np.ndarray]  # encoder output column -> one query vector


class ExamplesRefused(ValueError):
    """Too many examples, or only things to avoid: the message says which."""


@dataclass(frozen=True)
class Examples:
    like: tuple[int, ...] = ()  # product ids: more like these
    unlike: tuple[int, ...] = ()  # product ids: less like these
    like_photos: tuple[QueryVectors, ...] = ()  # stored query photos' vectors
    unlike_photos: tuple[QueryVectors, ...] = ()
    avoid: tuple[str, ...] = ()  # words to avoid ("heeled", "high heel")

    @property
    def count(self) -> int:
        return len(self.like) + len(self.unlike) + len(self.like_photos) + len(self.unlike_photos) + len(self.avoid)

    @property
    def has_positive(self) -> bool:
        return bool(self.like or self.like_photos)

    def __bool__(self) -> bool:
        return self.count > 0


NO_EXAMPLES = Examples()

# "boots, not heeled", "boots without laces", "bags except leather", "tops but no print"
NEGATION_WORDS = ("not", "without", "except", "no")
_CLAUSE = re.compile(r"[,;]")
_EXCLUDED_WORD = re.compile(r"(?:(?<=\s)|^)-([^\s-][^\s]*)")


def has_exclusions(text: str) -> bool:
    """Whether `text` excludes a word with a minus ("boots -heeled")."""
    return bool(_EXCLUDED_WORD.search(text))


def split_negations(text: str) -> tuple[str, list[str]]:
    """("boots, not heeled") -> ("boots", ["heeled"]); "-heeled" works too.

    Within each comma- or semicolon-separated clause, a word `-x` is avoided, and everything
    after "not", "without", "except" or "no" is one phrase to avoid (a "but" just before the
    marker goes with it). What is left, joined, is what to search for.
    """
    wanted: list[str] = []
    avoid: list[str] = []
    for clause in _CLAUSE.split(text):
        avoid += [w for w in _EXCLUDED_WORD.findall(clause)]
        words = _EXCLUDED_WORD.sub(" ", clause).split()
        lowered = [w.lower() for w in words]
        marker = next((i for i, w in enumerate(lowered) if w in NEGATION_WORDS), None)
        if marker is not None and marker + 1 < len(words):
            avoid.append(" ".join(words[marker + 1 :]))
            words = words[: marker - 1] if marker > 0 and lowered[marker - 1] == "but" else words[:marker]
        wanted += words
    return " ".join(wanted), list(dict.fromkeys(a for a in avoid if a))
