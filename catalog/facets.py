"""Facet counts of a search: how many of the products the query matches fall in each
category and in each price range.

The matched set (docs/search.md, "Facets"):
- a keyword-mode text search: every product the words match in full text (the set
  keyword search ranks, however long; catalog.keyword.match_clause), unless min_score
  is given, which only a ranked list can apply: then the candidate pool, as below;
- semantic, hybrid, photo and photo + words searches: the ranked candidate pool, the top
  SEARCH_CANDIDATES fused candidates of the query without category or price filters
  (after min_score). Vector search ranks every product, so it has no match set of its own;
- a listing without words or photo: the whole catalogue.

Counts are disjunctive, as shops show them: a category's count applies the price filter
but not the category filter, and the price histogram applies the category filter but not
the price filter. So every count says what choosing that filter would leave, and a zero
means choosing it would leave nothing of the matched set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from django.conf import settings

from catalog.filters import NO_FILTERS, Filters
from catalog.keyword import match_clause
from catalog.search import MAX_DEPTH, QueryVectors, SearchResult, search
from catalog.suggest import categories
from searchsite.db_router import search_connection

CENT = Decimal("0.01")
MAX_BUCKETS = 6


@dataclass(frozen=True)
class CategoryCount:
    name: str
    count: int
    selected: bool


@dataclass(frozen=True)
class PriceBucket:
    low: Decimal  # inclusive
    high: Decimal  # inclusive: the next bucket's low minus a cent, so min/max_price select it exactly
    count: int
    selected: bool  # the price filter is exactly this bucket


@dataclass(frozen=True)
class Facets:
    basis: str  # "full_text", "candidates" or "catalogue": what the matched set is
    matched: int  # products in the matched set that pass the price filter
    categories: list[CategoryCount]
    prices: list[PriceBucket]
    pool: int | None = None  # "candidates": how many the pool holds, before any filter


def price_step(low: Decimal, high: Decimal) -> Decimal:
    """A round bucket width (1, 2, 2.5 or 5 times a power of ten) giving at most MAX_BUCKETS."""
    span = max(high - low, CENT)
    raw = span / MAX_BUCKETS
    magnitude = Decimal(10) ** math.floor(math.log10(raw))
    for factor in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        step = factor * magnitude
        start = (low / step).to_integral_value(ROUND_FLOOR) * step
        if start + step * MAX_BUCKETS > high:
            return max(step, CENT)
    return 10 * magnitude


def _counts(basis: str, condition: str, params: list, filters: Filters) -> Facets:
    price_only = Filters(None, filters.min_price, filters.max_price)
    category_only = Filters(filters.category)
    with search_connection().cursor() as cursor:
        where, where_params = price_only.sql("p")
        cursor.execute(
            f"SELECT p.category, count(*) FROM catalog_product p WHERE {condition}{where} GROUP BY p.category",
            [*params, *where_params],
        )
        by_category = dict(cursor.fetchall())
        where, where_params = category_only.sql("p")
        base = f"FROM catalog_product p WHERE {condition}{where}"
        cursor.execute(f"SELECT min(p.price), max(p.price) {base}", [*params, *where_params])
        low, high = cursor.fetchone()
        buckets: list[PriceBucket] = []
        if low is not None:
            step = price_step(low, high)
            start = (low / step).to_integral_value(ROUND_FLOOR) * step
            cursor.execute(
                f"SELECT floor((p.price - %s) / %s)::int AS b, count(*) {base} GROUP BY b",
                [start, step, *params, *where_params],
            )
            counts = dict(cursor.fetchall())
            for i in range(int((high - start) // step) + 1):
                lo = start + i * step
                hi = lo + step - CENT
                buckets.append(
                    PriceBucket(lo, hi, counts.get(i, 0), filters.min_price == lo and filters.max_price == hi)
                )
    names = sorted(set(categories()) | set(by_category))
    return Facets(
        basis=basis,
        matched=sum(by_category.values()),
        categories=[CategoryCount(n, by_category.get(n, 0), n == filters.category) for n in names],
        prices=buckets,
    )


def search_facets(
    result: SearchResult,
    filters: Filters = NO_FILTERS,
    *,
    image_vector: QueryVectors | None = None,
    min_score: float | None = None,
) -> Facets:
    """Facets of `result`, a search() or browse() answer made with `filters` (and the photo's
    `image_vector` and `min_score` it was made with)."""
    if result.mode == "browse":
        return _counts("catalogue", "TRUE", [], filters)
    if result.mode == "keyword" and image_vector is None and result.query and min_score is None and not result.examples:
        condition, params = match_clause(result.query)
        return _counts("full_text", condition, params, filters)
    pool = result
    if filters != NO_FILTERS or result.depth != min(settings.SEARCH_CANDIDATES, MAX_DEPTH):
        # The query's own pool: no filters, the standard depth. The words are already
        # corrected, so they are not corrected again.
        pool = search(
            result.query,
            mode=result.mode,
            k=1,
            min_score=min_score,
            image_vector=image_vector,
            model=result.model,
            examples=result.examples,
            text_weight=result.text_weight,
        )
    facets = _counts("candidates", "p.id = ANY(%s)", [pool.candidates], filters)
    return Facets(facets.basis, facets.matched, facets.categories, facets.prices, pool=len(pool.candidates))
