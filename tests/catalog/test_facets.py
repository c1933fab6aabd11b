"""Facet counts of the current search (catalog/facets.py) on real Postgres and the 40-product
fixture: what the matched set is in each mode, disjunctive counts, and price buckets that
select exactly what they count."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.facets import price_step, search_facets
from catalog.filters import NO_FILTERS, Filters
from catalog.models import Product
from catalog.search import browse, search
from tests.catalog.test_search import catalogue, product_image  # noqa: F401  (module fixture)

CATEGORIES = ["Bags", "Sneakers", "T-shirts & tops", "Trousers"]


def counts(facets) -> dict[str, int]:
    return {c.name: c.count for c in facets.categories}


def full_text_count(words: str, **filters) -> int:
    return (
        Product.objects.extra(where=["search_doc @@ websearch_to_tsquery('english', %s)"], params=[words])
        .filter(**filters)
        .count()
    )


def test_price_step_is_round_and_gives_at_most_six_buckets():
    assert price_step(Decimal("10.90"), Decimal("135.99")) == Decimal(25)
    assert price_step(Decimal("5"), Decimal("400")) == Decimal(100)
    assert price_step(Decimal("50.00"), Decimal("50.00")) == Decimal("0.01")
    for low, high in [(Decimal("0.5"), Decimal("3")), (Decimal("13"), Decimal("9999.99"))]:
        step = price_step(low, high)
        start = (low // step) * step
        assert start + 6 * step > high


def test_keyword_mode_counts_every_full_text_match(catalogue, db):
    result = search("sneakers", mode="keyword", k=24)
    facets = search_facets(result)
    assert facets.basis == "full_text"
    assert counts(facets) == {"Bags": 0, "Sneakers": 10, "T-shirts & tops": 0, "Trousers": 0}
    assert facets.matched == 10 == full_text_count("sneakers")  # trainers too: category "Sneakers"
    # one word of two: any-word matches count, as keyword search returns them
    facets = search_facets(search("dark sneakers", mode="keyword"))
    assert (
        facets.matched
        == full_text_count("dark or sneakers")
        == search("dark sneakers", mode="keyword").total_candidates
    )


def test_counts_are_disjunctive(catalogue, db):
    filters = Filters("Trousers", Decimal("50"), Decimal("80"))
    facets = search_facets(search("dark", mode="keyword", filters=filters), filters)
    # categories: the price filter applies, the category filter does not
    assert counts(facets) == {c: full_text_count("dark", category=c, price__gte=50, price__lte=80) for c in CATEGORIES}
    assert [c.name for c in facets.categories if c.selected] == ["Trousers"]
    # prices: the category filter applies, the price filter does not
    assert sum(b.count for b in facets.prices) == full_text_count("dark", category="Trousers")


def test_a_price_bucket_selects_exactly_what_it_counts(catalogue, db):
    facets = search_facets(search("dark", mode="keyword"))
    buckets = facets.prices
    assert len(buckets) <= 6 and sum(b.count for b in buckets) == facets.matched
    for before, after in zip(buckets, buckets[1:]):
        assert after.low == before.high + Decimal("0.01")
    for b in buckets:
        chosen = Filters(None, b.low, b.high)
        result = search("dark", mode="keyword", filters=chosen, k=100)
        assert result.total_candidates == b.count
        assert [x.selected for x in search_facets(result, chosen).prices] == [x is b for x in buckets]


def test_a_zero_count_leaves_nothing(catalogue, db):
    facets = search_facets(search("trousers", mode="keyword"))
    empty = [c.name for c in facets.categories if c.count == 0]
    assert empty == ["Bags", "Sneakers", "T-shirts & tops"]
    for name in empty:
        assert search("trousers", mode="keyword", filters=Filters(name)).hits == []


@pytest.mark.parametrize("mode", ["semantic", "hybrid"])
def test_vector_modes_count_the_unfiltered_candidate_pool(catalogue, db, settings, mode):
    settings.SEARCH_CANDIDATES = 12
    result = search("dark trousers", mode=mode, k=5)
    facets = search_facets(result)
    assert facets.basis == "candidates"
    assert facets.matched == facets.pool == result.total_candidates == 12
    assert counts(facets) == {
        c: sum(1 for pid in result.candidates if Product.objects.get(pk=pid).category == c) for c in CATEGORIES
    }
    assert counts(facets)["Trousers"] >= 5
    # filtered: the same pool, sliced by the other filters
    chosen = Filters("Bags")
    filtered = search_facets(search("dark trousers", mode=mode, filters=chosen, k=5), chosen)
    assert counts(filtered) == counts(facets) and filtered.matched == facets.matched
    # a price filter narrows the counts, not the pool they are counted in
    cheap = Filters(None, None, Decimal("40"))
    priced = search_facets(search("dark trousers", mode=mode, filters=cheap, k=5), cheap)
    assert priced.pool == 12 and priced.matched < 12
    assert sum(b.count for b in filtered.prices) == counts(facets)["Bags"]


def test_deep_pages_count_the_same_pool(catalogue, db, settings):
    settings.SEARCH_CANDIDATES = 12
    first = search_facets(search("dark", mode="semantic", k=5))
    deep = search_facets(search("dark", mode="semantic", k=5, offset=20))
    assert counts(deep) == counts(first)


def test_min_score_narrows_the_matched_set(catalogue, db):
    result = search("dark trousers", mode="keyword", min_score=0.5)
    facets = search_facets(result, min_score=0.5)
    assert facets.basis == "candidates"
    assert facets.matched == result.total_candidates == full_text_count("dark trousers")


def test_photo_searches_count_their_candidates(catalogue, db, settings):
    from catalog.search import active_model, image_query_vectors

    settings.SEARCH_CANDIDATES = 10
    vector = image_query_vectors(active_model(), product_image("SM-016", catalogue))
    result = search(image_vector=vector, k=4, filters=Filters("Sneakers"))
    facets = search_facets(result, Filters("Sneakers"), image_vector=vector)
    assert facets.basis == "candidates" and facets.matched == 10
    assert counts(facets)["Bags"] >= 3


def test_a_listing_counts_the_catalogue(catalogue, db):
    chosen = Filters(None, None, Decimal("30"))
    facets = search_facets(browse(chosen), chosen)
    assert facets.basis == "catalogue"
    assert counts(facets) == {c: Product.objects.filter(category=c, price__lte=30).count() for c in CATEGORIES}
    assert sum(b.count for b in facets.prices) == 40
    assert search_facets(browse(), NO_FILTERS).matched == 40


def test_api_facets(catalogue, db, client):
    body = client.get("/api/search", {"q": "sneakers", "mode": "keyword", "facets": "true", "max_price": "60"}).json()
    facets = body["facets"]
    assert facets["basis"] == "full_text" and facets["matched"] == 4
    assert {c["name"]: c["count"] for c in facets["categories"]}["Sneakers"] == 4
    assert sum(b["count"] for b in facets["prices"]) == 10  # the price filter does not narrow its own histogram
    bucket = facets["prices"][0]
    assert set(bucket) == {"min_price", "max_price", "count", "selected"}
    assert "facets" not in client.get("/api/search", {"q": "sneakers"}).json()
    response = client.get("/api/search", {"q": "sneakers", "facets": "2"})
    assert response.status_code == 400 and response.json()["error"].startswith("facets must be true or false")


def test_a_page_encodes_its_words_once(catalogue, db, client, monkeypatch):
    """Facets of a filtered vector search run the query again without filters: the page and
    the API reuse the words' vectors instead of encoding them twice."""
    from ml.encoders import Encoder

    calls: list[tuple] = []
    original = Encoder.encode_text_signals

    def counting(self, texts, columns=None):
        calls.append(tuple(texts))
        return original(self, texts, columns)

    monkeypatch.setattr(Encoder, "encode_text_signals", counting)
    html = client.get("/", {"q": "dark trousers", "mode": "semantic", "category": "Bags"}).content.decode()
    assert "Counts of the best 40 matches" in html
    assert calls == [("dark trousers",)]
    client.get("/api/search", {"q": "pale bag", "mode": "hybrid", "category": "Bags", "facets": "1"})
    assert calls[1:] == [("pale bag",)]
