"""Popularity from the search log: visitors told apart without being kept, popular past
queries in autocomplete (privacy threshold, decay, pruning), clicked products as a signal."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import RequestFactory
from django.utils import timezone

from catalog import analytics, popularity
from catalog.models import PopularQuery, Product, ProductPopularity, SearchClick, SearchLog, VisitorSalt
from catalog.search import search
from catalog.suggest import suggest
from embeddings.models import EmbeddingModel
from tests.catalog.test_search import catalogue  # noqa: F401  (module fixture)


def request(ip: str = "198.51.100.7", agent: str = "Shopper/1.0"):
    return RequestFactory().get("/", REMOTE_ADDR=ip, HTTP_USER_AGENT=agent)


def searched(
    text: str, visitor: str, days_ago: float = 0, results: int = 12, corrected: bool = False, kind: str = "text"
) -> SearchLog:
    return SearchLog.objects.create(
        id=uuid.uuid4(),
        created_at=timezone.now() - timedelta(days=days_ago),
        kind=kind,
        text=text,
        mode="hybrid",
        results=results,
        took_ms=5,
        source="page",
        visitor=visitor,
        corrected=corrected,
    )


def test_a_visitor_is_the_same_within_a_day_and_untraceable_after(db):
    popularity._salts.clear()
    first = popularity.visitor_hash(request())
    assert popularity.visitor_hash(request()) == first and len(first) == 16
    assert popularity.visitor_hash(request(ip="198.51.100.8")) != first
    # another browser at the same address is the same visitor: one person never counts twice that way
    assert popularity.visitor_hash(request(agent="Other/2.0")) == first
    assert "198.51.100" not in first
    # tomorrow has a new salt, so the same shopper is another visitor; yesterday's salt is
    # deleted by the next refresh, so its hashes cannot be recomputed from an address
    today = timezone.now().date()
    VisitorSalt.objects.filter(day=today).update(day=today - timedelta(days=1))
    popularity._salts.clear()
    assert popularity.visitor_hash(request()) != first
    popularity.refresh()
    assert list(VisitorSalt.objects.values_list("day", flat=True)) == [today]


def test_searches_through_the_site_carry_the_visitor_and_whether_they_were_corrected(catalogue, db, client):
    client.get("/", {"q": "snaekers", "mode": "keyword"}, REMOTE_ADDR="203.0.113.9")
    client.get("/api/search", {"q": "dark trousers"}, REMOTE_ADDR="203.0.113.10")
    typo, plain = SearchLog.objects.order_by("created_at")
    assert typo.corrected and not plain.corrected
    assert typo.visitor and plain.visitor and typo.visitor != plain.visitor


def test_a_query_is_suggested_once_enough_visitors_searched_it(catalogue, db):
    for visitor in ("a", "b", "c"):
        searched("Dark  Trousers", visitor)  # normalised: lower case, single spaces
    popularity.refresh()
    assert popularity.popular_queries("dark t", 5) == ["dark trousers"]
    found = suggest("dark t")
    assert (found[0].text, found[0].kind, found[0].url) == ("dark trousers", "query", "/?q=dark+trousers")
    assert all(s.kind == "product" for s in found[1:])
    row = PopularQuery.objects.get()
    assert row.visitors == 3 and row.score == pytest.approx(3, rel=0.01)


@pytest.mark.parametrize(
    "history",
    [
        [("one shopper, many times", "a", 0)] * 6,  # never a query only one visitor typed
        [("two shoppers", "a", 0), ("two shoppers", "b", 0)],  # under SUGGEST_POPULAR_MIN_VISITORS (3)
        # three visitor-days, but never two visitors on one day: it may be one shopper on three days
        [("one a day", "a", 0), ("one a day", "b", 1), ("one a day", "c", 2)],
    ],
)
def test_a_query_too_few_visitors_searched_is_never_suggested(catalogue, db, history):
    for text, visitor, days_ago in history:
        searched(text, visitor, days_ago)
    popularity.refresh()
    assert not PopularQuery.objects.exists()
    assert all(s.kind != "query" for s in suggest(history[0][0]))


def test_misspelt_empty_photo_and_unhashed_searches_are_not_suggested(catalogue, db):
    for visitor in ("a", "b", "c"):
        searched("snaekers", visitor, corrected=True)
        searched("zzqx", visitor, results=0)
        searched("dark", visitor, kind="photo+text")
        searched("old log", "")  # logged before visitors were told apart
    popularity.refresh()
    assert not PopularQuery.objects.exists()


def test_the_threshold_is_a_setting(catalogue, db, settings):
    for visitor in ("a", "b"):
        searched("wide trousers", visitor)
    settings.SUGGEST_POPULAR_MIN_VISITORS = 2
    popularity.refresh()
    assert popularity.popular_queries("wid", 5) == ["wide trousers"]
    settings.SUGGEST_POPULAR_MIN_VISITORS = 1  # below 2 is read as 2
    popularity.refresh()
    assert popularity.popular_queries("wid", 5) == ["wide trousers"]


def test_recent_queries_outrank_older_more_searched_ones(catalogue, db, settings):
    settings.POPULARITY_HALF_LIFE_DAYS = 14
    for visitor in "abcd":
        searched("dark boots", visitor, days_ago=42)  # 4 visitors, three half-lives ago: 0.5
    for visitor in "ab":
        searched("dark bag", visitor)  # 2 visitors today: 2
    searched("dark bag", "c", days_ago=1)
    popularity.refresh()
    assert popularity.popular_queries("dark", 5) == ["dark bag", "dark boots"]
    assert PopularQuery.objects.get(text="dark boots").score == pytest.approx(4 * 0.5**3, rel=0.05)


def test_popular_queries_take_at_most_three_places_and_never_repeat_a_category(catalogue, db, settings):
    settings.SUGGEST_POPULAR_MIN_VISITORS = 2
    for text in ("trousers", "trousers dark", "trousers wide", "trousers grey", "trousers slim"):
        searched(text, "a")
        searched(text, "b")
    popularity.refresh()
    found = suggest("trou", k=8)
    kinds = [s.kind for s in found]
    assert kinds[:4] == ["query", "query", "query", "category"] and kinds.count("query") == 3
    assert "trousers" not in [s.text for s in found if s.kind == "query"]  # the category is offered
    assert [s.kind for s in suggest("trou", k=2)] == ["query", "query"]


def test_pruning_the_log_prunes_what_it_made_popular(catalogue, db):
    for visitor in "abc":
        searched("grey trousers", visitor, days_ago=100)
        log = searched("dark trousers", visitor)
        SearchClick.objects.create(search=log, product=Product.objects.get(sku="SM-001"), rank=1)
    old = searched("grey trousers", "a", days_ago=100)
    SearchClick.objects.create(search=old, product=Product.objects.get(sku="SM-002"), rank=1)
    popularity.refresh()
    assert set(PopularQuery.objects.values_list("text", flat=True)) == {"grey trousers", "dark trousers"}
    assert ProductPopularity.objects.count() == 2
    analytics.prune(90)
    assert list(PopularQuery.objects.values_list("text", flat=True)) == ["dark trousers"]
    assert list(ProductPopularity.objects.values_list("product__sku", flat=True)) == ["SM-001"]


def clicks(sku: str, visitors: str, days_ago: float = 0) -> None:
    product = Product.objects.get(sku=sku)
    for visitor in visitors:
        log = searched("trousers", visitor, days_ago)
        SearchClick.objects.create(search=log, product=product, rank=3)
        SearchClick.objects.filter(search=log).update(created_at=log.created_at)


def test_clicked_products_count_once_per_visitor_and_day_and_decay(catalogue, db, settings):
    settings.POPULARITY_HALF_LIFE_DAYS = 10
    clicks("SM-001", "aab")  # visitor a twice the same day: once
    clicks("SM-002", "a", days_ago=10)
    popularity.refresh()
    assert popularity.product_popularity(list(Product.objects.values_list("pk", flat=True))) == [
        (Product.objects.get(sku="SM-001").pk, pytest.approx(2, rel=0.01)),
        (Product.objects.get(sku="SM-002").pk, pytest.approx(0.5, rel=0.05)),
    ]


def test_popularity_reorders_what_the_query_found_and_explains_it(catalogue, db):
    plain = search("trousers", mode="keyword", k=10, popularity=1.0)
    assert all(c.signal != "popularity" for h in plain.hits for c in h.explanation)  # no clicks yet
    last = plain.hits[-1].product
    clicks(last.sku, "abcde")
    clicks("SM-001", "abcde")  # a popular product the words do not find
    assert "trousers" not in Product.objects.get(sku="SM-001").title.lower()
    popularity.refresh()
    off = search("trousers", mode="keyword", k=10, popularity=0)
    assert [h.product.sku for h in off.hits] == [h.product.sku for h in plain.hits]
    boosted = search("trousers", mode="keyword", k=10, popularity=1.0)
    order = [h.product.sku for h in boosted.hits]
    assert order[0] == last.sku and "SM-001" not in order
    assert set(order) == {h.product.sku for h in plain.hits}
    top = boosted.hits[0]
    parts = {c.signal: c for c in top.explanation}
    assert parts["popularity"].rank == 1 and parts["popularity"].weight == 1.0
    assert parts["popularity"].label == "Popularity (clicks)"
    assert sum(c.share for c in top.explanation) == pytest.approx(top.score)
    other = boosted.hits[1]
    assert {c.signal: c for c in other.explanation}["popularity"].rank is None


def test_the_boost_is_off_unless_the_setting_turns_it_on(catalogue, db, settings):
    first = search("trousers", mode="keyword", k=10).hits
    clicks(first[-1].product.sku, "abc")
    popularity.refresh()
    assert search("trousers", mode="keyword", k=10).hits[0].product == first[0].product
    settings.SEARCH_POPULARITY_WEIGHT = 2.0
    assert search("trousers", mode="keyword", k=10).hits[0].product == first[-1].product


def test_the_suite_measures_the_boost_on_held_out_queries(catalogue, db):
    from catalog.suite import SuiteQuery, popularity_rows, popularity_table, CatalogueResult

    by_category = {
        c: frozenset(Product.objects.filter(category=c).values_list("sku", flat=True))
        for c in ("Trousers", "Sneakers", "Bags")
    }
    photos = [catalogue / Product.objects.get(sku=sku).image.name for sku in ("SM-004", "SM-019")]
    queries = [
        SuiteQuery("keyword", by_category["Trousers"], "dark trousers"),
        SuiteQuery("keyword", by_category["Sneakers"], "sneakers"),
        SuiteQuery("paraphrase", by_category["Bags"], "handbag"),
        SuiteQuery("paraphrase", by_category["Trousers"], "pants"),
        SuiteQuery("photo", frozenset({"SM-004"}), image=photos[0]),
        SuiteQuery("photo", frozenset({"SM-019"}), image=photos[1]),
    ]
    rows = popularity_rows(EmbeddingModel.active(), queries, [0.0, 1.0], seed=3)
    assert {(r["kind"], r["weight"]) for r in rows} == {
        (k, w) for k in ("keyword", "paraphrase", "photo") for w in (0.0, 1.0)
    }
    assert all(r["queries"] == 2 and 0 <= r["score"] <= 1 for r in rows)  # each query scored once per weight
    assert rows[0]["clicks"] > 0
    assert not SearchLog.objects.exists() and not ProductPopularity.objects.exists()  # cleaned up after
    result = CatalogueResult("tiny", 40, popularity=rows)
    table = popularity_table([result])
    assert "| tiny | keyword | map@10 | hybrid | 2 |" in table and "weight 1" in table and "**all**" in table


def test_the_refresh_command(catalogue, db):
    for visitor in "abc":
        searched("dark trousers", visitor)
    out = io.StringIO()
    call_command("refresh_popularity", stdout=out)
    assert out.getvalue().strip() == "refresh_popularity: 1 popular queries, 0 clicked products"


def test_the_analytics_page_shows_what_is_suggested_and_clicked(catalogue, db, admin_client):
    for visitor in "abc":
        searched("dark trousers", visitor)
    searched("only me", "a")
    clicks("SM-004", "ab")
    popularity.refresh()
    html = admin_client.get("/admin/catalog/searchlog/").content.decode()
    suggested = html.split('id="popular-queries"')[1].split("</table>")[0]
    assert "dark trousers" in suggested and "only me" not in suggested
    clicked = html.split('id="popular-products"')[1].split("</table>")[0]
    assert Product.objects.get(sku="SM-004").title in clicked and "Ranking does not use them" in html
