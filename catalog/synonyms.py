"""Synonyms for keyword search: a shopper's word that the catalogue never uses finds the
catalogue's words for the same thing ("overgarment" -> coat, "footwear" -> boot, sandal).

Keyword search matches only the shop's own words, so "pants" finds nothing in a shop that
sells "trousers". Table catalog_synonym holds (term, word) pairs:

- **WordNet** rows, made from the catalogue's vocabulary (catalog_searchword: every word of
  its titles, categories and descriptions): for each vocabulary word, the other words of
  its first noun and adjective sense and the words of its first noun sense's broader terms
  (ml.wordnet.alternatives: "trousers" -> pants, garment). A term stands for every
  vocabulary word that lists it, so a broader term ("garment") finds all the narrower ones
  the shop uses. They apply only to a query word that no product contains: a word the shop
  uses means what the shop means by it.
- **Related** rows (source "related"), made the same way from words further away
  (ml.wordnet.related_terms): broader terms two levels up ("footwear" for "sneaker") and
  narrower terms two levels down ("jeans", "chinos" for "trousers"). A term uses them only
  when it has no WordNet or admin row: a near synonym, when there is one, is what the
  shopper meant, and further words beside it would only dilute it.
- **Admin** rows (Django admin, "Synonyms"), which apply always ("tee" -> "t-shirt").

refresh() adds the WordNet rows of vocabulary words not yet looked up; it runs after each
import and from Celery beat (SYNONYM_REFRESH_MINUTES), on the embed queue, whose worker
already holds the heavy libraries (WordNet is read with nltk). A query reads one indexed
table: expansions(). catalog/keyword.py ORs each expanded word with its catalogue words.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import connection, transaction

from catalog import search_cache
from ml import wordnet
from searchsite.db_router import search_connection

logger = logging.getLogger(__name__)

# Off inside without_synonyms() (the activation gate), whatever SEARCH_SYNONYMS says.
_active: ContextVar[bool] = ContextVar("synonyms_active", default=True)

WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
REFRESH_BATCH = 2000  # vocabulary words looked up per transaction
MAX_WORDS_PER_TERM = 30  # a very broad term ("artifact") would otherwise OR half the catalogue
MAX_PHRASE_WORDS = 2  # query phrases looked up: single words and pairs ("gym shoe")


def refresh(batch: int = REFRESH_BATCH) -> int:
    """Add the WordNet synonyms of the vocabulary words not yet looked up; returns the rows
    added. Without WordNet (wordnet-base not installed) it adds none and says so once."""
    if not wordnet.wordnet_available():
        logger.warning(
            "synonyms: WordNet is not installed (apt-get install wordnet-base); keyword search "
            "matches the catalogue's own words only"
        )
        return 0
    added = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                """SELECT w.word FROM catalog_searchword w
                   WHERE NOT EXISTS (SELECT 1 FROM catalog_synonymlookup l WHERE l.word = w.word)
                   ORDER BY w.word LIMIT %s FOR UPDATE OF w SKIP LOCKED""",
                [batch],
            )
            words = [w for (w,) in cursor.fetchall()]
            if not words:
                return added
            # Near words first: a (term, word) pair that is both keeps the nearer source.
            rows = [(alt, word, "wordnet") for word in words for alt in wordnet.alternatives(word)]
            rows += [(alt, word, "related") for word in words for alt in wordnet.related_terms(word)]
            rows = [row for row in rows if len(row[0]) <= 100]
            if rows:
                cursor.execute(
                    """INSERT INTO catalog_synonym (term, word, term_key, source)
                       SELECT t, w, catalog_term_key(t), s
                       FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS x(t, w, s, n)
                       WHERE catalog_term_key(t) <> '' ORDER BY n
                       ON CONFLICT (term_key, word) DO NOTHING""",
                    [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
                )
                added += max(cursor.rowcount, 0)
            cursor.execute(
                "INSERT INTO catalog_synonymlookup (word) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING", [words]
            )


def enabled() -> bool:
    return settings.SEARCH_SYNONYMS and _active.get()


@contextmanager
def synonyms_used(active: bool) -> Iterator[None]:
    """Inside this block keyword search uses synonyms or not, whatever the context around
    it; still never with SEARCH_SYNONYMS off."""
    token = _active.set(active)
    try:
        yield
    finally:
        _active.reset(token)


@contextmanager
def without_synonyms() -> Iterator[None]:
    """Search the words as typed inside this block. The activation gate fits so: its
    paraphrase probes replace catalogue words by WordNet alternatives, the very relation
    these synonyms invert, so with them its fitted weights would lean on keyword search for
    the wrong reason."""
    with synonyms_used(False):
        yield


def phrases(query: str) -> list[str]:
    """The query's words and runs of up to MAX_PHRASE_WORDS words, lower case: what is looked up."""
    words = [w.lower() for w in WORD.findall(query)]
    return list(
        dict.fromkeys(
            " ".join(words[i : i + n]) for n in range(1, MAX_PHRASE_WORDS + 1) for i in range(len(words) - n + 1)
        )
    )


def expansions(query: str) -> dict[str, list[str]]:
    """Word or phrase of `query` -> the catalogue words it stands for (admin synonyms, and
    WordNet ones for words no product contains; related ones for a term with neither).
    Empty when nothing expands."""
    looked_up = phrases(query)
    if not looked_up:
        return {}
    found = search_cache.per_version("synonyms", looked_up, _expansions)
    return {term: list(words) for term, words in found.items() if words}


def _expansions(looked_up: list[str]) -> dict[str, tuple[str, ...]]:
    with search_connection().cursor() as cursor:
        cursor.execute(
            """SELECT q.t, array_agg(DISTINCT s.word ORDER BY s.word)
               FROM unnest(%s::text[]) AS q(t)
               JOIN catalog_synonym s ON s.term_key = catalog_term_key(q.t)
               WHERE (s.source = 'admin' OR NOT EXISTS (
                   SELECT 1 FROM catalog_product p WHERE p.search_doc @@ plainto_tsquery('english', q.t)))
                 AND (s.source <> 'related' OR NOT EXISTS (
                   SELECT 1 FROM catalog_synonym near WHERE near.term_key = s.term_key AND near.source <> 'related'))
               GROUP BY q.t""",
            [looked_up],
        )
        return {term: tuple(found)[:MAX_WORDS_PER_TERM] for term, found in cursor.fetchall()}


def groups(query: str, found: dict[str, list[str]]) -> list[list[str]]:
    """The query as groups of alternatives, left to right: a phrase with synonyms is one
    group ([phrase, *its words]), longer phrases first; every other word is a group of one."""
    words = [w.lower() for w in WORD.findall(query)]
    out: list[list[str]] = []
    i = 0
    while i < len(words):
        for n in range(min(MAX_PHRASE_WORDS, len(words) - i), 0, -1):
            phrase = " ".join(words[i : i + n])
            if phrase in found or n == 1:
                out.append([phrase, *[w for w in found.get(phrase, []) if w != phrase]])
                i += n
                break
    return out


def expanded(query: str) -> list[list[str]] | None:
    """`query` as groups of alternatives (groups()) when any of its words has synonyms and it
    uses no search syntax (quotes, -exclusions, "or"); else None: search it as typed (also
    always with SEARCH_SYNONYMS off, and inside without_synonyms())."""
    if not enabled():
        return None
    if '"' in query or re.search(r"(^|\s)-\w", query) or re.search(r"\bor\b", query, re.IGNORECASE):
        return None
    found = expansions(query)
    return groups(query, found) if found else None


def known_terms(words: Sequence[str]) -> set[str]:
    """The words among `words` that have synonyms: not misspellings (catalog/suggest.py)."""
    found = expansions(" ".join(words)) if words and enabled() else {}
    return {w for w in words if w in found}
