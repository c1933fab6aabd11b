"""Keyword search: Postgres full text over catalog_product.search_doc (migration 0002).

search_doc weighs title (A) over category (B) over description (C). The shopper's words
go through websearch_to_tsquery ("quoted phrases", -exclusions, or). Products matching
every word rank first; when a query has words the catalogue lacks ("dark ankle boots"),
products matching some of the words follow, so one unknown word does not empty the page.
A word the catalogue never uses also matches the catalogue's words for the same thing
(catalog/synonyms.py).
"""

from __future__ import annotations

import re

from catalog.filters import NO_FILTERS, Filters
from catalog.synonyms import expanded
from searchsite.db_router import search_connection

WORD = re.compile(r"\w+", re.UNICODE)


def any_words_query(query: str) -> str | None:
    """The same words joined by OR, or None when the query uses phrase/exclusion syntax."""
    if '"' in query or re.search(r"(^|\s)-\w", query):
        return None
    words = [w for w in WORD.findall(query) if w.lower() != "or"]
    return " or ".join(words) if len(words) > 1 else None


def tsqueries(query: str) -> tuple[str, list, str, list]:
    """SQL for `query`'s two tsqueries, each with its parameters: strict (every word) and
    loose (any word). A word the catalogue never uses is ORed with the catalogue words it
    stands for (catalog/synonyms.py): "overgarment black" is strict
    (overgarment | coat | jacket) & black."""
    groups = expanded(query)
    if groups is None:
        return (
            "websearch_to_tsquery('english', %s)",
            [query],
            "websearch_to_tsquery('english', %s)",
            [any_words_query(query) or query],
        )
    alternatives = ["(" + " || ".join(["plainto_tsquery('english', %s)"] * len(g)) + ")" for g in groups]
    params = [w for g in groups for w in g]
    return " && ".join(alternatives), params, " || ".join(alternatives), params


def match_clause(query: str, alias: str = "p") -> tuple[str, list]:
    """The SQL condition (and its parameters) a product must meet to be a keyword match of
    `query`: the set keyword_search ranks, and the set facets count in keyword mode."""
    _, _, loose, params = tsqueries(query)
    return f"{alias}.search_doc @@ ({loose})", params


def keyword_search(query: str, limit: int, filters: Filters | None = None) -> list[tuple[int, float]]:
    """(product_id, score) best first; score in [0, 1), all-words matches above partial ones."""
    where, params = (filters or NO_FILTERS).sql("p")
    strict, strict_params, loose, loose_params = tsqueries(query)
    # ts_rank_cd(..., 32) is rank / (rank + 1): in [0, 1). All-word matches map to
    # [0.5, 1), partial matches to [0, 0.5), so the score is monotone in the order. So when
    # `limit` products match every word, they are the whole answer, and the partial matches
    # (a common word alone: a tenth of a catalogue) are never ranked: the second list's
    # one-time filter skips its scan. The order is the same as ranking every partial match.
    sql = f"""
        WITH q AS (SELECT {strict} AS strict, {loose} AS loose),
        every_word AS MATERIALIZED (
            SELECT p.id, 0.5 + 0.5 * ts_rank_cd(p.search_doc, q.loose, 32) AS score
            FROM catalog_product p, q
            WHERE p.search_doc @@ ({strict}){where}
            ORDER BY score DESC, p.id
            LIMIT %s
        )
        SELECT id, score FROM every_word
        UNION ALL
        (SELECT p.id, 0.5 * ts_rank_cd(p.search_doc, q.loose, 32) AS score
         FROM catalog_product p, q
         WHERE (SELECT count(*) FROM every_word) < %s
           AND p.search_doc @@ ({loose}) AND NOT p.search_doc @@ q.strict{where}
         ORDER BY score DESC, p.id
         LIMIT %s)
        ORDER BY score DESC, id
        LIMIT %s
    """
    args = [*strict_params, *loose_params, *strict_params, *params, limit, limit, *loose_params, *params, limit, limit]
    with search_connection().cursor() as cursor:
        cursor.execute(sql, args)
        return [(pid, float(score)) for pid, score in cursor.fetchall()]
