"""WordNet 3.0 from the Debian package ``wordnet-base``, read offline with nltk.

Used for paraphrase queries (synonyms and broader terms of a word) and for a
corpus of short texts that teaches a text tower general word meaning. Pure
Python: no Django, no torch.

The folder is ``/usr/share/wordnet`` unless ``WORDNET_DIR`` says otherwise. It
is read with nltk's ``WordNetCorpusReader`` pointed straight at that folder;
nothing is downloaded (no ``nltk_data``).
"""

from __future__ import annotations

import os
import random
import re
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader  # type only: nltk is read lazily (_reader)

DEFAULT_WORDNET_DIR = "/usr/share/wordnet"

# Function words are never replaced: WordNet gives them odd senses ("in" -> inch).
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "for",
        "with",
        "and",
        "or",
        "in",
        "on",
        "at",
        "to",
        "by",
        "from",
        "as",
        "is",
        "are",
        "be",
        "it",
        "its",
        "this",
        "that",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "no",
        "not",
        "without",
        "into",
        "over",
        "under",
        "up",
        "down",
        "off",
    ]
)
_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_GLOSS_MAX_WORDS = 12

_lock = threading.Lock()
_reader: WordNetCorpusReader | None = None
_load_error: str | None = None
_pools: tuple[list[str], list[str]] | None = None


def wordnet_dir() -> Path:
    # From the environment, not Django's settings: this module runs without Django too
    # (training, scripts/build_eval_suite.py).
    return Path(os.environ.get("WORDNET_DIR") or DEFAULT_WORDNET_DIR)


def _get_reader() -> WordNetCorpusReader | None:
    """Load WordNet once per process (behind a lock); None when it is not installed."""
    global _reader, _load_error
    if _reader is not None or _load_error is not None:
        return _reader
    with _lock:
        if _reader is None and _load_error is None:
            root = wordnet_dir()
            if not (root / "data.noun").is_file():
                _load_error = f"WordNet not found in {root} (apt-get install wordnet-base)"
                return None
            # Lazy: importing nltk costs 3.2 s and ~130 MB resident; catalog/gate.py imports this
            # module in every process (its receiver is connected at start-up), and only the
            # processes that make probes or train ever read WordNet.
            from ml.wordnet_nltk import open_debian_wordnet

            _reader = open_debian_wordnet(root)
    return _reader


def wordnet_available() -> bool:
    return _get_reader() is not None


def _require() -> WordNetCorpusReader:
    reader = _get_reader()
    if reader is None:
        raise FileNotFoundError(_load_error or "WordNet is not available")
    return reader


def _clean(lemma: str) -> str:
    return lemma.replace("_", " ").lower()


def _base_forms(reader: WordNetCorpusReader, word: str) -> set[str]:
    """The word and every base form morphy finds for it, as WordNet keys ("flip_flop")."""
    key = word.strip().lower().replace(" ", "_")
    forms = {key}
    for pos in ("n", "a", "v"):
        base = reader.morphy(key, pos)
        if base:
            forms.add(base.lower())
    return forms


def _is_inflection(reader: WordNetCorpusReader, candidate: str, forms: set[str]) -> bool:
    return bool(_base_forms(reader, candidate) & forms)


def _key(reader: WordNetCorpusReader, word: str) -> str:
    key = word.strip().lower().replace(" ", "_")
    if key and not reader.synsets(key) and reader.synsets(key.replace("_", "-")):
        key = key.replace("_", "-")  # WordNet spells some compounds with "-": "flip-flop"
    return key


def _by_offset(synsets: list) -> list:
    # nltk keeps a synset's pointers in a set: sort them, or the order follows the hash seed.
    return sorted(synsets, key=lambda s: s.offset())


def _other_words(reader: WordNetCorpusReader, key: str, synsets: list) -> list[str]:
    """The lemmas of `synsets` in order, lower-case, spaces for "_": never the word `key`
    itself, an inflection of it, or a lemma that repeats one of its words ("running game"
    for "running")."""
    forms = _base_forms(reader, key)
    own_tokens = {t for f in forms for t in re.split(r"[_-]", f)}
    out: list[str] = []
    seen: set[str] = set()
    for synset in synsets:
        for lemma in synset.lemma_names():
            if lemma.lower() in seen:
                continue
            seen.add(lemma.lower())
            if lemma.lower() in forms or _is_inflection(reader, lemma, forms):
                continue
            if own_tokens & set(re.split(r"[_-]", lemma.lower())):
                continue
            out.append(_clean(lemma))
    return out


def alternatives(word: str) -> list[str]:
    """Other words for ``word``: lemmas of its first noun and adjective sense, then the
    lemmas of its first noun sense's direct hypernyms (later senses are mostly rare ones:
    "flag" -> "masthead"). Lower-case, spaces for "_",
    in a fixed order; never the word itself or an inflection of it."""
    reader = _require()
    key = _key(reader, word)
    if not key or key in STOPWORDS:
        return []
    nouns = reader.synsets(key, "n")
    senses = nouns[:1] + reader.synsets(key, "a")[:1]
    hypernyms = _by_offset(nouns[0].hypernyms() + nouns[0].instance_hypernyms()) if nouns else []
    return _other_words(reader, key, senses + hypernyms)


def _levels(synset: object, step: str, depth: int) -> list:
    """The synsets 1..depth steps away along `step` ("hypernyms" or "hyponyms"), nearest first."""
    found: list = []
    level = [synset]
    for _ in range(depth):
        level = _by_offset([nxt for s in level for nxt in getattr(s, step)() if nxt not in found])
        found += level
    return found


MAX_RELATED = 60  # "flower" has hundreds of kinds two levels down; the nearest are kept


def related_terms(word: str, depth: int = 2, limit: int = MAX_RELATED) -> list[str]:
    """Words further from ``word`` than alternatives(): the broader terms of its first noun
    sense from two up to ``depth`` levels up ("sneaker" -> footwear) and its narrower terms
    down to ``depth`` levels ("trousers" -> jean, chino, shorts; "pullover" -> sweatshirt):
    a shop that sells trousers answers "jeans" with them. Instances (proper names) are left
    out, and so is a word for which this is not one of its first two meanings ("white"
    names whites, white trousers, but means a colour first; "flannel" a fabric): these are
    the words a shopper types for what the shop sells. Nearest first, no repeats, none of
    alternatives(), at most ``limit``."""
    reader = _require()
    key = _key(reader, word)
    if not key or key in STOPWORDS:
        return []
    nouns = reader.synsets(key, "n")
    if not nouns:
        return []
    further = [s for s in _levels(nouns[0], "hypernyms", depth) if s not in nouns[0].hypernyms()]
    narrower = _levels(nouns[0], "hyponyms", depth)
    related = set(further + narrower)
    near = set(alternatives(word))
    found = [w for w in _other_words(reader, key, further + narrower) if w not in near]
    return [w for w in found if related & set(_main_noun_senses(reader, w))][:limit]


def _uses(reader: WordNetCorpusReader, key: str, pos: str) -> int:
    """How often WordNet's tagged corpus uses ``key`` as part of speech ``pos``."""
    return sum(lemma.count() for s in reader.synsets(key, pos) for lemma in s.lemmas() if lemma.name().lower() == key)


def shopper_terms(word: str) -> list[str]:
    """Every WordNet word a shopper may type for ``word``: its alternatives(), its
    related_terms() and, for an adjective, the adjectives WordNet lists as similar to its
    first two senses ("dark" -> dusky, black; "light" -> pale, pastel). A word used as an
    adjective at least half as often as a noun stands for its adjective sense alone: "plain"
    is a flat land first, but a plain shirt in a shop. Lower-case, spaces for "_", no
    repeats, never the word itself."""
    reader = _require()
    key = _key(reader, word)
    if not key or key in STOPWORDS:
        return []
    adjectives = reader.synsets(key, "a")
    similar = _other_words(reader, key, _by_offset([t for s in adjectives[:2] for t in s.similar_tos()]))
    if adjectives and 2 * _uses(reader, key, "a") >= _uses(reader, key, "n"):
        found = _other_words(reader, key, adjectives[:1]) + similar
    else:
        found = alternatives(word) + related_terms(word) + similar
    return list(dict.fromkeys(found))


def _main_noun_senses(reader: WordNetCorpusReader, phrase: str) -> list:
    """A word's first two noun senses ("footwear": the covering, then the clothing)."""
    return reader.synsets(phrase.replace(" ", "_"), "n")[:2]


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def paraphrase(words: Sequence[str], rng: random.Random, avoid: Collection[str] = ()) -> list[str] | None:
    """Replace at least one of ``words`` by an alternative (each further word with
    probability 0.5). No replacement contains a word from ``avoid`` (lower-case
    words, e.g. a catalogue's vocabulary). An element of the result may hold several
    words ("gym shoe"). None when no word can be replaced."""
    avoid_set = {a.lower() for a in avoid}
    options: dict[int, list[str]] = {}
    for i, word in enumerate(words):
        if word.lower() in STOPWORDS or not word.strip():
            continue
        ok = [alt for alt in alternatives(word) if not any(t in avoid_set for t in _tokens(alt) if t not in STOPWORDS)]
        if ok:
            options[i] = ok
    if not options:
        return None
    replaceable = sorted(options)
    first = rng.choice(replaceable)
    out = list(words)
    for i in replaceable:
        if i == first or rng.random() < 0.5:
            out[i] = rng.choice(options[i])
    return out


def _corpus_pools() -> tuple[list[str], list[str]]:
    """(lemma phrases, short glosses) of all noun and adjective synsets, file order.

    Read straight from the data files: building nltk Synset objects for all 100k
    senses takes several seconds, a line split takes well under one."""
    global _pools
    if _pools is not None:
        return _pools
    if not (wordnet_dir() / "data.noun").is_file():  # nltk's reader is not needed here
        raise FileNotFoundError(f"WordNet not found in {wordnet_dir()} (apt-get install wordnet-base)")
    with _lock:
        if _pools is None:
            phrases: list[str] = []
            glosses: list[str] = []
            seen_phrases: set[str] = set()
            seen_glosses: set[str] = set()
            for name in ("data.noun", "data.adj"):
                with open(wordnet_dir() / name, encoding="utf-8", errors="replace") as f:
                    for line in f:
                        if line.startswith(" "):  # licence header
                            continue
                        head, _, gloss = line.partition(" | ")
                        fields = head.split()
                        count = int(fields[3], 16)
                        for k in range(count):
                            lemma = re.sub(r"\(.*\)$", "", fields[4 + 2 * k])  # adj markers "(a)"
                            # Proper names and codes teach no shopper vocabulary.
                            if lemma[:1].isupper() or any(c.isdigit() for c in lemma):
                                continue
                            phrase = _clean(lemma)
                            if phrase not in seen_phrases:
                                seen_phrases.add(phrase)
                                phrases.append(phrase)
                        # The gloss's first clause, without its quoted examples.
                        first = gloss.split(";")[0].split('"')[0]
                        first = " ".join(re.sub(r"\([^)]*\)", " ", first).split()).rstrip(",:")
                        n_words = len(first.split())
                        if 2 <= n_words <= _GLOSS_MAX_WORDS and first not in seen_glosses:
                            seen_glosses.add(first)
                            glosses.append(first)
            phrase_set = set(phrases)
            _pools = (phrases, [g for g in glosses if g not in phrase_set])
    return _pools


def distillation_corpus(max_items: int, seed: int = 0) -> list[str]:
    """A deterministic sample of up to ``max_items`` short English texts: about half
    noun/adjective lemma phrases ("flip flop", "parka"), half short glosses (first
    clause, at most 12 words), shuffled with ``seed``."""
    phrases, glosses = _corpus_pools()
    rng = random.Random(seed)
    n_phrases = min(len(phrases), (max_items + 1) // 2)
    n_glosses = min(len(glosses), max_items - n_phrases)
    n_phrases = min(len(phrases), max_items - n_glosses)  # top up if glosses ran out
    items = rng.sample(phrases, n_phrases) + rng.sample(glosses, n_glosses)
    rng.shuffle(items)
    return items
