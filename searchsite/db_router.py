"""Search reads on a read-only streaming replica (DATABASE_REPLICA_URL), all else on the primary.

Only the shopper-facing search requests (the search page, product pages, /api/search,
/api/search/image, /api/categories, /api/suggest) read from the replica, and only the catalogue
they search: products, their photos, models and vectors (``SEARCH_MODELS``), through the ORM
(this router) and through raw SQL (``search_connection()``). Writes always go to the primary,
and so do reads of anything a request may have just written (query photos, analytics,
sessions, tokens).

**While the replica lags.** A request decides once, on entry, where its search reads go: the
replica when it is at most ``REPLICA_MAX_LAG_SECONDS`` behind, else the primary. So a search
never mixes two points in time, a product saved a minute ago is not missing from results
because replication fell behind, and a lagging or unreachable replica costs capacity, not
correctness. The lag is measured on the replica (``replica_lag``) at most every
``REPLICA_CHECK_SECONDS`` per process; each search response says where it read from in
``X-Search-Database``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

REPLICA = "replica"
# What a search reads: the catalogue and the vectors of the serving model.
SEARCH_MODELS = frozenset(
    {
        "catalog.product",
        "catalog.productphoto",
        "embeddings.embeddingmodel",
        "embeddings.productvector",
        "embeddings.photovector",
    }
)

_search_alias: ContextVar[str | None] = ContextVar("search_alias", default=None)

# Lag in seconds, or None when the replica cannot be used: unreachable, not a standby, or
# unable to say how far behind it is.
_LAG_SQL = """
SELECT pg_is_in_recovery(),
       pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn(),
       EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'),
       EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())
"""


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def replica_lag() -> float | None:
    """How far behind the primary the replica's data is, in seconds; None if it cannot be used.

    0 when the replica streams from the primary and has replayed everything it received.
    Otherwise the age of the last transaction it replayed: an upper bound (after a quiet spell
    on the primary, the first new write makes it read high until it is replayed, milliseconds
    later), never an underestimate. A replica that is not streaming (its primary unreachable,
    replay of archived WAL only) is judged the same way, so it ages out instead of serving
    old data as fresh.
    """
    replica = connections[REPLICA]
    try:
        with replica.cursor() as cursor:
            cursor.execute(_LAG_SQL)
            in_recovery, replayed_all, streaming, age = cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("search replica unavailable, searching the primary: %s", exc)
        replica.close()  # the next check reconnects
        return None
    if not in_recovery:
        logger.warning("DATABASE_REPLICA_URL is not a standby (promoted?); searching the primary")
        return None
    if streaming and replayed_all:
        return 0.0
    return None if age is None else max(0.0, float(age))


class _LagCache:
    """One lag reading per process every REPLICA_CHECK_SECONDS (a search must not pay for it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._lag: float | None = None

    def get(self) -> float | None:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= settings.REPLICA_CHECK_SECONDS:
                self._lag = replica_lag()
                self._read_at = time.monotonic()
            return self._lag

    def clear(self) -> None:
        with self._lock:
            self._read_at = float("-inf")


lag_cache = _LagCache()


def choose_search_database() -> tuple[str, str]:
    """(alias, why) for a search starting now: the replica when it is fresh enough."""
    if not replica_configured():
        return DEFAULT_DB_ALIAS, ""
    lag = lag_cache.get()
    if lag is None:
        return DEFAULT_DB_ALIAS, "replica unavailable"
    if lag > settings.REPLICA_MAX_LAG_SECONDS:
        return DEFAULT_DB_ALIAS, f"replica {lag:.1f}s behind"
    return REPLICA, f"{lag:.1f}s behind"


@contextmanager
def search_reads() -> Iterator[tuple[str, str]]:
    """Inside: the catalogue's reads go to the database choose_search_database() picked."""
    alias, why = choose_search_database()
    token = _search_alias.set(alias)
    try:
        yield alias, why
    finally:
        _search_alias.reset(token)


def search_connection() -> BaseDatabaseWrapper:
    """Where raw search SQL runs: the replica inside search_reads(), else the primary."""
    return connections[_search_alias.get() or DEFAULT_DB_ALIAS]


def reads_search_database(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A search view: its catalogue reads go through search_reads(); the response says where."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with search_reads() as (alias, why):
            response = view(request, *args, **kwargs)
        if replica_configured():
            name = "replica" if alias == REPLICA else "primary"
            response["X-Search-Database"] = f"{name}; {why}"
        return response

    return wrapped


class SearchReplicaRouter:
    """Django database router (settings.DATABASE_ROUTERS)."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        alias = _search_alias.get()
        if alias and model._meta.label_lower in SEARCH_MODELS:
            return alias
        return None  # the primary

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        return DEFAULT_DB_ALIAS  # never the replica (it is read-only: a write there would fail)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the replica holds the primary's rows: objects read from either may relate

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return False if db == REPLICA else None
