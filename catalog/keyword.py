"""Keyword search: Postgres full text over catalog_product.search_doc (migration 0002).

search_doc weighs title (A) over category (B) over description (C). The shopper's words
go through websearch_to_tsquery ("quoted phrases", -exclusions, or). Products matching
every word rank first; when a query has words the catalogue lacks ("dark ankle boots"),
products matching some of the words follow, so one unknown word does not empty the page.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from searchsite.db_router import search_connection

if TYPE_CHECKING:
    from catalog.search import Filters

WORD = re.compile(r"\w+", re.UNICODE)


def any_words_query(query: str) -> str | None:
    """The same words joined by OR, or None when the query uses phrase/exclusion syntax."""
    if '"' in query or re.search(r"(^|\s)-\w", query):
        return None
    words = [w for w in WORD.findall(query) if w.lower() != "or"]
    return " or ".join(words) if len(words) > 1 else None


def match_clause(query: str, alias: str = "p") -> tuple[str, list]:
    """The SQL condition (and its parameters) a product must meet to be a keyword match of
    `query`: the set keyword_search ranks, and the set facets count in keyword mode."""
    return f"{alias}.search_doc @@ websearch_to_tsquery('english', %s)", [any_words_query(query) or query]


def keyword_search(query: str, limit: int, filters: Filters | None = None) -> list[tuple[int, float]]:
    """(product_id, score) best first; score in [0, 1), all-words matches above partial ones."""
    from catalog.search import NO_FILTERS

    where, params = (filters or NO_FILTERS).sql("p")
    match, match_params = match_clause(query)
    # ts_rank_cd(..., 32) is rank / (rank + 1): in [0, 1). All-word matches map to
    # [0.5, 1), partial matches to [0, 0.5), so the score is monotone in the order.
    sql = f"""
        WITH q AS (SELECT websearch_to_tsquery('english', %s) AS strict,
                          websearch_to_tsquery('english', %s) AS loose)
        SELECT p.id,
               (CASE WHEN p.search_doc @@ q.strict THEN 0.5 ELSE 0.0 END)
                 + 0.5 * ts_rank_cd(p.search_doc, q.loose, 32) AS score
        FROM catalog_product p, q
        WHERE {match}{where}
        ORDER BY score DESC, p.id
        LIMIT %s
    """
    with search_connection().cursor() as cursor:
        cursor.execute(sql, [query, *match_params, *match_params, *params, limit])
        return [(pid, float(score)) for pid, score in cursor.fetchall()]
