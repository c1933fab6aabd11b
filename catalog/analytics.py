"""Search analytics: every search logged (one INSERT), clicks on its results, daily figures.

What is kept is the search, never the shopper: no IP address, cookie, session, user or
photo; only a hash that tells one day's visitors apart and is untraceable once the day is over
(catalog/popularity.py, which turns the log into popular queries and products). A photo search is kind "photo" (its words, if any, in `text`). Search ids are random
UUIDs handed to the client that ran the search, which reports clicks with them
(POST /api/click). Off with SEARCH_LOG_ENABLED=false; rows older than SEARCH_LOG_DAYS are
deleted by `prune_search_log` (a management command, also run daily by Celery beat).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import Avg, Count, Exists, F, FloatField, OuterRef, Q, QuerySet
from django.db.models.functions import Cast, TruncDate
from django.http import HttpRequest
from django.utils import timezone

from catalog.models import Product, SearchClick, SearchLog
from catalog.popularity import refresh, visitor_hash
from catalog.search import SearchResult

# Search-as-you-type: a search typed on top of one shown less than this long ago replaces it
# ("snea" -> "sneakers"), unless a result of it was clicked.
REPLACE_SECONDS = 30
# A later page of a search (?qid=) counts as the same search for this long.
PAGE_REUSE = timedelta(days=1)

T = TypeVar("T")


def _unflushed(write: Callable[[], T]) -> T:
    """Run one search-log write in a transaction that does not wait for the WAL to reach disk
    (synchronous_commit off, for this transaction only), so the shopper's search does not wait
    for a flush: about 1 ms of the 2.5-3.5 ms the log adds to a search at 100k products
    (docs/benchmarks.md section 10). A crash of Postgres may lose the last fraction of a
    second of log rows, never corrupt anything. Inside a caller's transaction the write joins
    it unchanged."""
    alias = router.db_for_write(SearchLog)
    if connections[alias].in_atomic_block:
        return write()
    with transaction.atomic(using=alias):
        with connections[alias].cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        return write()


def _insert_unflushed(row: SearchLog) -> None:
    """INSERT a new search-log row as _unflushed() writes it, in one round trip: the SET LOCAL
    and the INSERT (of every field, as the ORM's) go to Postgres as one message, which it runs
    as one implicit transaction (as catalog.search.vector_search sends its query), where
    BEGIN, SET LOCAL, INSERT and COMMIT took four. Inside a caller's transaction the row joins
    it unchanged."""
    alias = router.db_for_write(SearchLog)
    connection = connections[alias]
    if connection.in_atomic_block:
        row.save(force_insert=True, using=alias)
        return
    meta, quote = SearchLog._meta, connection.ops.quote_name
    fields = meta.concrete_fields
    columns = ", ".join(quote(str(f.column)) for f in fields)
    values = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SET LOCAL synchronous_commit TO OFF; INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({values})",
            [f.get_db_prep_save(f.pre_save(row, add=True), connection) for f in fields],
        )


def _as_uuid(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except (ValueError, TypeError, AttributeError):
        return None


def log_search(
    result: SearchResult,
    *,
    text: str,
    kind: str,
    source: str,
    page: int = 1,
    same_as: str | None = None,
    replaces: str | None = None,
    request: HttpRequest | None = None,
) -> uuid.UUID | None:
    """Record a search that was answered; return its id (None when logging is off).

    request: the search's request, told apart from other visitors of the day by
    catalog.popularity.visitor_hash (never stored itself).
    same_as: the id of this very search shown earlier (a later page): reused when it names a
    search with the same words and kind. replaces: the id of a search the shopper was still
    typing (the page sends it): overwritten when recent and unclicked. Otherwise one INSERT."""
    if not settings.SEARCH_LOG_ENABLED:
        return None
    text = (text or "")[:500]
    earlier = _as_uuid(same_as)
    if (
        earlier
        and SearchLog.objects.filter(
            pk=earlier, text=text, kind=kind, created_at__gte=timezone.now() - PAGE_REUSE
        ).exists()
    ):
        return earlier
    now = timezone.now()
    fields = {
        "created_at": now,
        "kind": kind,
        "text": text,
        "mode": result.mode,
        "page": page,
        "results": result.total_candidates,
        "took_ms": round(result.took_ms, 2),
        "source": source,
        "corrected": result.correction is not None,
        "visitor": visitor_hash(request) if request is not None else "",
    }
    typed = _as_uuid(replaces)
    if typed:
        recent_unclicked = SearchLog.objects.filter(
            pk=typed, created_at__gte=now - timedelta(seconds=REPLACE_SECONDS)
        ).exclude(Exists(SearchClick.objects.filter(search=OuterRef("pk"))))
        if _unflushed(lambda: recent_unclicked.update(**fields)):
            return typed
    row = SearchLog(id=uuid.uuid4(), **fields)
    _insert_unflushed(row)
    return row.pk


class ClickRefused(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def record_click(search_id: str | None, sku: str | None, rank: str | None) -> None:
    """Record that result `rank` (1 = first) of search `search_id`, product `sku`, was opened.
    A second click on the same product of the same search is not counted again."""
    search = _as_uuid(search_id)
    if search is None:
        raise ClickRefused("query_id must be the query_id a search answered with")
    if not sku:
        raise ClickRefused("sku is required")
    if rank is None or not rank.isascii() or not rank.isdigit() or not 1 <= int(rank) <= 100_000:
        raise ClickRefused("rank must be a whole number from 1 (the first result)")
    product = Product.objects.filter(sku=sku).values_list("pk", flat=True).first()
    if product is None or not SearchLog.objects.filter(pk=search).exists():
        raise ClickRefused("unknown query_id or sku", 404)
    SearchClick.objects.bulk_create(
        [SearchClick(search_id=search, product_id=product, rank=int(rank))], ignore_conflicts=True
    )


def prune(days: int | None = None) -> int:
    """Delete searches (and their clicks) older than `days` (SEARCH_LOG_DAYS); return how many.
    The popularity aggregates are rebuilt at once, so they hold nothing that was deleted."""
    keep = settings.SEARCH_LOG_DAYS if days is None else days
    deleted, per_model = SearchLog.objects.filter(created_at__lt=timezone.now() - timedelta(days=keep)).delete()
    refresh()
    return per_model.get("catalog.SearchLog", 0)


# --- reports ---------------------------------------------------------------------------


@dataclass
class Day:
    day: date
    searches: int
    zero_results: int
    clicked: int  # searches with at least one click
    clicks: int
    mean_click_rank: float | None

    @property
    def click_through_rate(self) -> float | None:
        return self.clicked / self.searches if self.searches else None

    @property
    def zero_rate(self) -> float | None:
        return self.zero_results / self.searches if self.searches else None


@dataclass
class QueryStats:
    text: str
    kind: str
    searches: int
    zero_results: int
    clicked: int
    mean_click_rank: float | None

    @property
    def click_through_rate(self) -> float | None:
        return self.clicked / self.searches if self.searches else None


def _window(start: date, end: date) -> Q:
    """Searches made on the days start..end (inclusive, UTC)."""
    first = datetime.combine(start, datetime.min.time(), tzinfo=timezone.get_current_timezone())
    return Q(created_at__gte=first, created_at__lt=first + timedelta(days=(end - start).days + 1))


def _searches(start: date, end: date) -> QuerySet[SearchLog]:
    return SearchLog.objects.filter(_window(start, end)).annotate(
        clicked=Exists(SearchClick.objects.filter(search=OuterRef("pk")))
    )


def days(start: date, end: date) -> list[Day]:
    """Per day from start to end (every day, searched or not), newest first."""
    per_day: dict[date, Mapping[str, Any]] = {
        row["day"]: row
        for row in _searches(start, end)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .order_by()
        .annotate(
            searches=Count("pk"),
            zero=Count("pk", filter=Q(results=0)),
            clicked_count=Count("pk", filter=Q(clicked=True)),
        )
    }
    clicks: dict[date, Mapping[str, Any]] = {
        row["day"]: row
        for row in SearchClick.objects.filter(search__in=SearchLog.objects.filter(_window(start, end)))
        .annotate(day=TruncDate("search__created_at"))
        .values("day")
        .order_by()
        .annotate(n=Count("pk"), rank=Avg(Cast(F("rank"), FloatField())))
    }
    out = []
    for offset in range((end - start).days + 1):
        day = end - timedelta(days=offset)
        row, click = per_day.get(day, {}), clicks.get(day, {})
        out.append(
            Day(
                day,
                row.get("searches", 0),
                row.get("zero", 0),
                row.get("clicked_count", 0),
                click.get("n", 0),
                click.get("rank"),
            )
        )
    return out


def total(per_day: list[Day]) -> Day:
    """The days added up (mean click rank weighted by clicks); `day` is the last one."""
    clicks = sum(d.clicks for d in per_day)
    rank_sum = sum(d.mean_click_rank * d.clicks for d in per_day if d.mean_click_rank is not None)
    return Day(
        per_day[0].day,
        sum(d.searches for d in per_day),
        sum(d.zero_results for d in per_day),
        sum(d.clicked for d in per_day),
        clicks,
        rank_sum / clicks if clicks else None,
    )


def top_queries(start: date, end: date, *, limit: int = 20, zero_only: bool = False) -> list[QueryStats]:
    """The most frequent searches of start..end (same words and kind), most searched first;
    zero_only: only those that found nothing."""
    rows = _searches(start, end)
    if zero_only:
        rows = rows.filter(results=0)
    grouped = (
        rows.values("text", "kind")
        .order_by()
        .annotate(
            searches=Count("pk"),
            zero=Count("pk", filter=Q(results=0)),
            clicked_count=Count("pk", filter=Q(clicked=True)),
        )
        .order_by("-searches", "text")[:limit]
    )
    found = [QueryStats(r["text"], r["kind"], r["searches"], r["zero"], r["clicked_count"], None) for r in grouped]
    ranks = {
        (r["search__text"], r["search__kind"]): r["rank"]
        for r in SearchClick.objects.filter(
            search__in=SearchLog.objects.filter(_window(start, end)), search__text__in=[q.text for q in found]
        )
        .values("search__text", "search__kind")
        .order_by()
        .annotate(rank=Avg(Cast(F("rank"), FloatField())))
    }
    for q in found:
        q.mean_click_rank = ranks.get((q.text, q.kind))
    return found


def export_csv(start: date, end: date) -> str:
    """Per day and query (words and kind): searches, zero-result searches, clicked searches,
    click-through rate and mean click rank, for start..end."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "day",
            "query",
            "kind",
            "searches",
            "zero_results",
            "clicked_searches",
            "click_through_rate",
            "mean_click_rank",
        ]
    )
    for offset in range((end - start).days + 1):
        day = end - timedelta(days=offset)
        for q in top_queries(day, day, limit=100_000):
            writer.writerow(
                [
                    day.isoformat(),
                    _cell(q.text),
                    q.kind,
                    q.searches,
                    q.zero_results,
                    q.clicked,
                    f"{q.click_through_rate:.4f}" if q.click_through_rate is not None else "",
                    f"{q.mean_click_rank:.2f}" if q.mean_click_rank is not None else "",
                ]
            )
    return out.getvalue()


def _cell(text: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet: shoppers type queries.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
