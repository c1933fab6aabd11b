"""Search analytics: searches logged without personal data, clicks, daily figures, export, pruning."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from catalog import analytics
from catalog.models import Product, SearchClick, SearchLog
from tests.catalog.test_api import upload
from tests.catalog.test_search import catalogue, product_image  # noqa: F401  (module fixture)
from tests.conftest import png_bytes

# visitor: a hash under a salt deleted after the day (tests/catalog/test_popularity.py)
FIELDS = {"id", "created_at", "kind", "text", "mode", "page", "results", "took_ms", "source", "corrected", "visitor"}


def test_a_page_search_is_logged_without_the_shopper(catalogue, db, client):
    response = client.get(
        "/", {"q": "dark trousers", "mode": "keyword"}, REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="Secret/1.0"
    )
    row = SearchLog.objects.get()
    assert (row.kind, row.text, row.mode, row.page, row.source) == ("text", "dark trousers", "keyword", 1, "page")
    assert row.results == response.context["result"].total_candidates > 0 and row.took_ms > 0
    # nothing about who searched: no field beyond these, and no value holds the address or agent
    assert {f.name for f in SearchLog._meta.concrete_fields} == FIELDS
    stored = " ".join(str(v) for v in SearchLog.objects.values().get().values())
    assert "203.0.113" not in stored and "Secret" not in stored
    html = response.content.decode()
    assert f'data-query-id="{row.pk}"' in html and 'data-rank="1"' in html


def test_zero_results_and_photo_searches(catalogue, db, client):
    client.get("/", {"q": "zzzqqq", "mode": "keyword"})
    body = client.post("/api/search/image", {"image": upload(png_bytes(), "me.png")}).json()
    client.post("/api/search/image", {"image": upload(png_bytes(), "me.png"), "q": "dark"})
    zero, photo, both = SearchLog.objects.order_by("created_at")
    assert (zero.kind, zero.results) == ("text", 0)
    assert (photo.kind, photo.text, photo.source, str(photo.pk)) == ("photo", "", "api", body["query_id"])
    assert (both.kind, both.text) == ("photo+text", "dark")


def test_typing_replaces_the_search_still_being_typed(catalogue, db, client):
    first = client.get("/", {"q": "snea", "fragment": "1"}).context["query_id"]
    second = client.get("/", {"q": "sneakers", "fragment": "1", "replaces": str(first)}).context["query_id"]
    assert second == first and SearchLog.objects.get().text == "sneakers"
    # a clicked search stays; so does an old one
    assert client.post("/api/click", {"query_id": str(first), "sku": "SM-001", "rank": "2"}).status_code == 204
    third = client.get("/", {"q": "sneakers red", "fragment": "1", "replaces": str(first)}).context["query_id"]
    assert third != first
    SearchLog.objects.filter(pk=third).update(created_at=timezone.now() - timedelta(minutes=5))
    assert client.get("/", {"q": "boots", "replaces": str(third)}).context["query_id"] != third
    assert SearchLog.objects.count() == 3
    assert client.get("/", {"q": "bags", "replaces": "not-a-uuid"}).status_code == 200


def test_later_pages_count_as_the_same_search(catalogue, db, client):
    first = client.get("/", {"q": "dark", "k": 4}).context["query_id"]
    page2 = client.get("/", {"q": "dark", "k": 4, "page": 2, "query_id": str(first)})
    assert page2.context["query_id"] == first and 'data-rank="5"' in page2.content.decode()
    # another query's id is not reused, nor is a later page without one
    assert client.get("/", {"q": "bag", "page": 2, "k": 4, "query_id": str(first)}).context["query_id"] != first
    assert SearchLog.objects.filter(page=2).count() == 1
    api = client.get("/api/search", {"q": "dark", "k": 4}).json()
    assert (
        client.get("/api/search", {"q": "dark", "k": 4, "page": 2, "query_id": api["query_id"]}).json()["query_id"]
        == api["query_id"]
    )


def test_clicks_are_recorded_once_per_result(catalogue, db, client):
    query_id = client.get("/api/search", {"q": "dark trousers"}).json()["query_id"]
    for _ in range(2):
        assert client.post("/api/click", {"query_id": query_id, "sku": "SM-001", "rank": "3"}).status_code == 204
    click = SearchClick.objects.get()
    assert (str(click.search_id), click.product.sku, click.rank) == (query_id, "SM-001", 3)


@pytest.mark.parametrize(
    "fields, status, needle",
    [
        ({"sku": "SM-001", "rank": "1"}, 400, "query_id"),
        ({"query_id": "nope", "sku": "SM-001", "rank": "1"}, 400, "query_id"),
        ({"query_id": str(uuid.uuid4()), "rank": "1"}, 400, "sku is required"),
        ({"query_id": str(uuid.uuid4()), "sku": "SM-001", "rank": "0"}, 400, "rank"),
        ({"query_id": str(uuid.uuid4()), "sku": "SM-001", "rank": "²"}, 400, "rank"),
        ({"query_id": str(uuid.uuid4()), "sku": "SM-001", "rank": "1"}, 404, "unknown"),
        ({"query_id": str(uuid.uuid4()), "sku": "SM\x00", "rank": "1"}, 400, "Null"),
    ],
)
def test_bad_clicks_say_why(catalogue, db, client, fields, status, needle):
    response = client.post("/api/click", fields)
    assert response.status_code == status and needle in response.json()["error"]
    assert not SearchClick.objects.exists()


def test_logging_can_be_switched_off(catalogue, db, client, settings):
    settings.SEARCH_LOG_ENABLED = False
    page = client.get("/", {"q": "dark"})
    assert client.get("/api/search", {"q": "dark"}).json()["query_id"] is None
    assert not SearchLog.objects.exists() and "data-query-id" not in page.content.decode()
    assert "data-rank" not in page.content.decode()


def log(text: str, results: int, days_ago: int = 0, kind: str = "text") -> SearchLog:
    return SearchLog.objects.create(
        id=uuid.uuid4(),
        created_at=timezone.now() - timedelta(days=days_ago),
        kind=kind,
        text=text,
        mode="hybrid",
        results=results,
        took_ms=10,
        source="page",
    )


def click(search: SearchLog, sku: str, rank: int) -> None:
    SearchClick.objects.create(search=search, product=Product.objects.get(sku=sku), rank=rank)


@pytest.fixture
def history(catalogue, db):
    today = [
        log("boots", 30),
        log("boots", 30),
        log("boots", 30),
        log("=cmd|' /C calc'!A0", 0),
        log("", 12, kind="photo"),
    ]
    click(today[0], "SM-001", 1)
    click(today[0], "SM-002", 4)
    click(today[1], "SM-003", 7)
    yesterday = [log("bag", 10, days_ago=1), log("xyzzy", 0, days_ago=1)]
    click(yesterday[0], "SM-004", 2)
    log("old", 5, days_ago=120)
    return today, yesterday


def test_daily_figures(history):
    end = timezone.localdate()
    today, yesterday, *_ = analytics.days(end - timedelta(days=6), end)
    assert (today.searches, today.zero_results, today.clicked, today.clicks) == (5, 1, 2, 3)
    assert today.click_through_rate == pytest.approx(2 / 5) and today.mean_click_rank == pytest.approx(4.0)
    assert (yesterday.searches, yesterday.zero_results, yesterday.mean_click_rank) == (2, 1, 2.0)
    top = analytics.top_queries(end, end)
    assert (top[0].text, top[0].searches, top[0].clicked, top[0].mean_click_rank) == ("boots", 3, 2, 4.0)
    assert [q.text for q in analytics.top_queries(end - timedelta(days=6), end, zero_only=True)] == [
        "=cmd|' /C calc'!A0",
        "xyzzy",
    ]
    week = analytics.total(analytics.days(end - timedelta(days=6), end))
    assert (week.searches, week.clicks, week.mean_click_rank) == (7, 4, pytest.approx(3.5))


def test_the_admin_report_and_its_csv(history, admin_client):
    page = admin_client.get(reverse("admin:catalog_searchlog_changelist"))
    html = page.content.decode()
    assert page.status_code == 200 and 'id="per-day"' in html and "xyzzy" in html and "boots" in html
    assert "40%" in html  # today's click-through rate: 2 of 5 searches
    day = (timezone.localdate() - timedelta(days=1)).isoformat()
    one_day = admin_client.get(reverse("admin:catalog_searchlog_changelist"), {"day": day}).content.decode()
    assert "xyzzy" in one_day and "boots" not in one_day.split('id="top-queries"')[1]
    export = admin_client.get(reverse("admin:catalog_searchlog_export"), {"days": "7"})
    assert export["Content-Type"].startswith("text/csv") and "attachment" in export["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    boots = next(r for r in rows if r["query"] == "boots")
    assert (boots["searches"], boots["clicked_searches"], boots["click_through_rate"], boots["mean_click_rank"]) == (
        "3",
        "2",
        "0.6667",
        "4.00",
    )
    # a query that a spreadsheet would run as a formula is written as text
    assert any(r["query"] == "'=cmd|' /C calc'!A0" for r in rows) and not any(r["query"] == "old" for r in rows)


def test_the_report_needs_staff(history, client):
    assert client.get(reverse("admin:catalog_searchlog_changelist")).status_code == 302
    assert client.get(reverse("admin:catalog_searchlog_export")).status_code == 302


def test_old_searches_are_pruned_with_their_clicks(history, settings):
    settings.SEARCH_LOG_DAYS = 90
    out = io.StringIO()
    call_command("prune_search_log", stdout=out)
    assert "1 searches older than 90 days deleted" in out.getvalue()
    assert not SearchLog.objects.filter(text="old").exists() and SearchLog.objects.count() == 7
    assert analytics.prune(0) == 7 and not SearchClick.objects.exists()
