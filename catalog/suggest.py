"""Typo tolerance and autocomplete over the catalogue's own words.

Corrections: a query word the catalogue does not contain (no product matches it in full
text) is replaced by the closest word of the vocabulary (table catalog_searchword,
migration 0006) within a typo budget: 1 edit for words of 4-7 letters, 2 from 8 letters,
none below 4 (as Algolia and Typesense count them); an edit is an insertion, deletion,
substitution or swap of neighbouring letters. Candidates come from shared trigrams (a GIN
index), so the vocabulary is never scanned whole.

Autocomplete: popular past queries that start with what was typed (catalog/popularity.py),
then categories and product titles whose words start with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.urls import reverse

from catalog import search_cache
from catalog.popularity import popular_queries
from catalog.synonyms import known_terms
from searchsite.db_router import search_connection

WORD = re.compile(r"[^\W\d_]+", re.UNICODE)  # a run of letters
MIN_CORRECTABLE = 4
# Vocabulary words (most shared trigrams first) checked by edit distance. Generous: a swap
# in a short word ("bgas") leaves it one trigram in common with its correction ("bags").
CANDIDATES = 200
MAX_PREFIX_CHARS = 100
# Titles read for one autocomplete answer: the ranking looks at this many matches, so a
# one-letter prefix on 100k products costs the same as a rare word (bench/suggest_latency.py).
TITLE_POOL = 100
# At most this many of an answer's suggestions are past queries, so categories and titles
# still show.
POPULAR_SLOTS = 3


def typo_budget(word: str) -> int:
    n = len(word)
    return 0 if n < MIN_CORRECTABLE else 1 if n < 8 else 2


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (a swap of neighbours is one edit); stops at limit+1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        if min(row) > limit:
            return limit + 1
        prev2, prev = prev, row
    return prev[-1]


@dataclass(frozen=True)
class Correction:
    original: str  # the query as typed
    corrected: str  # the query searched instead
    words: dict[str, str] = field(default_factory=dict)  # misspelt word -> its correction


def unknown_words(words: list[str]) -> list[str]:
    """The words no product contains (in Postgres full text: stemmed, stop words ignored)."""
    if not words:
        return []
    unknown = search_cache.per_version("unknown_word", words, _unknown_words)
    return [w for w in words if unknown[w]]


def _unknown_words(words: list[str]) -> dict[str, bool]:
    with search_connection().cursor() as cursor:
        cursor.execute(
            """SELECT w FROM unnest(%s::text[]) AS w
               WHERE numnode(plainto_tsquery('english', w)) > 0
                 AND NOT EXISTS (SELECT 1 FROM catalog_product p
                                 WHERE p.search_doc @@ plainto_tsquery('english', w))""",
            [words],
        )
        unknown = {w for (w,) in cursor.fetchall()}
    return {w: w in unknown for w in words}


def closest_word(word: str) -> str | None:
    """The vocabulary word within `word`'s typo budget that is closest, then most shared
    trigrams, then in most products; None if there is none."""
    if typo_budget(word) == 0:
        return None
    return search_cache.per_version("closest_word", [word], lambda w: {word: _closest_word(word)})[word]


def _closest_word(word: str) -> str | None:
    budget = typo_budget(word)
    with search_connection().cursor() as cursor:
        cursor.execute(
            """WITH q AS (SELECT catalog_word_trigrams(%s) AS t)
               SELECT w.word, (SELECT count(*) FROM unnest(w.trigrams) AS x WHERE x = ANY(q.t)) AS shared
               FROM catalog_searchword w, q
               WHERE w.trigrams && q.t AND length(w.word) BETWEEN %s AND %s
               ORDER BY shared DESC, w.word LIMIT %s""",
            [word, len(word) - budget, len(word) + budget, CANDIDATES],
        )
        rows = cursor.fetchall()
    close = sorted(
        ((edit_distance(word, w, budget), -shared, w) for w, shared in rows if w != word),
    )
    close = [c for c in close if c[0] <= budget][:5]
    if not close:
        return None
    # A vocabulary word whose products are gone would find nothing: count what each finds.
    with search_connection().cursor() as cursor:
        cursor.execute(
            """SELECT w, (SELECT count(*) FROM (SELECT 1 FROM catalog_product p
                          WHERE p.search_doc @@ plainto_tsquery('english', w) LIMIT 100) AS m)
               FROM unnest(%s::text[]) AS w""",
            [[w for _, _, w in close]],
        )
        found = dict(cursor.fetchall())
    best = min((c for c in close if found.get(c[2])), key=lambda c: (c[0], c[1], -found[c[2]], c[2]), default=None)
    return best[2] if best else None


def excluded(query: str, start: int) -> bool:
    """The word at `start` is an exclusion ("-boots"), not the end of "t-shirt"."""
    return start > 0 and query[start - 1] == "-" and (start == 1 or query[start - 2].isspace())


def correct_query(query: str) -> Correction | None:
    """`query` with its misspelt words corrected, or None when nothing needed correcting.

    Words after a minus (exclusions) and inside quotes (phrases) are left as typed."""
    quoted = [m.span() for m in re.finditer(r'"[^"]*"?', query)]
    spans = [
        m
        for m in WORD.finditer(query)
        if typo_budget(m.group()) and not any(a <= m.start() < b for a, b in quoted) and not excluded(query, m.start())
    ]
    lowered = sorted({m.group().lower() for m in spans})
    unknown = unknown_words(lowered)
    unknown = [w for w in unknown if w not in known_terms(unknown)]  # a synonym is no misspelling
    words = {w: c for w in unknown if (c := closest_word(w))}
    if not words:
        return None
    corrected = query
    for m in reversed(spans):
        replacement = words.get(m.group().lower())
        if replacement:
            corrected = corrected[: m.start()] + replacement + corrected[m.end() :]
    return Correction(query, corrected, words)


# --- autocomplete --------------------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    text: str
    kind: str  # "query" (a popular past search), "category" or "product"
    url: str  # where choosing it leads: the search, the category's listing, the product's page


def _prefix_tsquery(words: list[str]) -> str:
    # Letters only (WORD), so nothing here is tsquery syntax.
    return " & ".join(f"{w}:*" for w in words)


def _starts_words(text: str, words: list[str]) -> bool:
    """Every typed word is the start of some word of `text` (the last may be unfinished)."""
    have = [w.lower() for w in WORD.findall(text)]
    return all(any(h.startswith(w) for h in have) for w in words)


def categories() -> list[str]:
    """Distinct categories by walking the category index (one probe per category)."""
    with search_connection().cursor() as cursor:
        cursor.execute(
            """WITH RECURSIVE c AS (
                   (SELECT category FROM catalog_product ORDER BY category LIMIT 1)
                   UNION ALL
                   SELECT (SELECT p.category FROM catalog_product p WHERE p.category > c.category
                           ORDER BY p.category LIMIT 1) FROM c WHERE c.category IS NOT NULL)
               SELECT category FROM c WHERE category IS NOT NULL"""
        )
        return [c for (c,) in cursor.fetchall()]


# The lower(title) index read in its own order ("USING ~<~" is text_pattern_ops' order), so
# a common prefix stops after TITLE_POOL entries instead of sorting thousands of titles.
STARTING_TITLES = """
    SELECT title, sku FROM (
        SELECT title, sku FROM catalog_product WHERE lower(title) LIKE %s
        ORDER BY lower(title) USING ~<~ LIMIT %s) AS pool
    ORDER BY length(title), title, sku"""
TITLES_WITH_WORDS = """
    SELECT title, sku FROM (
        SELECT title, sku FROM catalog_product WHERE title_words @@ to_tsquery('simple', %s) LIMIT %s) AS pool
    ORDER BY length(title), title, sku"""


def suggest(prefix: str, k: int = 8) -> list[Suggestion]:
    """Up to `k` completions of `prefix`: popular past queries that start with it (at most
    POPULAR_SLOTS, most popular first), then matching categories, then product titles that
    start with the prefix, then titles whose words start with the typed words (shorter
    first). Words are matched by their beginnings, case-insensitively."""
    words = [w.lower() for w in WORD.findall(prefix[:MAX_PREFIX_CHARS])]
    if not words or sum(map(len, words)) < 2:
        return []
    search_url = reverse("catalog:search")
    matching = [name for name in categories() if _starts_words(name, words)]
    names = {name.lower() for name in matching}
    out: list[Suggestion] = [
        Suggestion(text, "query", search_url + "?" + urlencode({"q": text}))
        for text in popular_queries(prefix[:MAX_PREFIX_CHARS], min(k, POPULAR_SLOTS) + len(names))
        if text not in names  # the category itself is offered below
    ][: min(k, POPULAR_SLOTS)]
    out += [Suggestion(name, "category", search_url + "?" + urlencode({"category": name})) for name in matching]
    out = out[:k]
    if len(out) >= k:
        return out
    typed = " ".join(prefix.lower().split())
    like = typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    # Titles that start with what was typed come first, then titles whose words start with
    # the typed words (asked only when the first are too few); each pool is bounded, so a
    # short, common prefix costs no more than a rare one. Shorter titles first in each.
    seen = {s.text.lower() for s in out}
    with search_connection().cursor() as cursor:
        for sql, match in ((STARTING_TITLES, like), (TITLES_WITH_WORDS, _prefix_tsquery(words))):
            cursor.execute(sql, [match, TITLE_POOL])
            for title, sku in cursor.fetchall():
                if title.lower() in seen:
                    continue
                seen.add(title.lower())
                out.append(Suggestion(title, "product", reverse("catalog:product", args=[sku])))
                if len(out) >= k:
                    return out
    return out
