"""Caches in front of search (docs/search.md, "Caches"): per process, then shared in Redis.

Shop search repeats itself: a few wordings and photos make up much of the traffic. Three
caches, each in the web worker's own memory (a hit costs no network round trip), each with a
second level in Redis that every web worker shares (shared_cache(); off without REDIS_URL or
with SEARCH_SHARED_CACHE off, and skipped for a while when Redis does not answer):

* query vectors of words, keyed by (model, words, columns): the text tower runs once per
  wording per worker;
* query vectors of a photo, keyed by (model, the decoded pixels' digest);
* whole result pages, keyed by (catalogue version, model, query, filters, page, ...);
* what the typo correction and the synonyms look up per word (is it in the catalogue, its
  closest catalogue word, the catalogue words it stands for), keyed by (catalogue version,
  word): a new wording made of words seen before costs no lookup (``per_version``).

Vectors of a given model for given words or pixels never change, so the first two need no
invalidation. A result page does change: with a product, a photo, a vector, the models, the
click popularity or the synonyms. Every write to those tables bumps the catalogue version in
the same transaction (a statement trigger, catalog/migrations/0014_catalogue_version.py), so a page
cached under an older version is never read again. The version is read before the search
runs, from the database the search reads (the replica included), so a page stored under
version v was computed from data at least as new as v.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any, Generic, TypeVar

import numpy as np
import redis
from django.conf import settings
from django.core.cache import BaseCache, caches
from PIL import Image

from searchsite.db_router import search_connection

V = TypeVar("V")


class LRUCache(Generic[V]):
    """A bounded, thread-safe least-recently-used map whose entries expire after `max_age` s
    (0: never). Counts its hits and misses (the load test reports them).

    With a `shared` name, a second level shared by every web worker stands behind it (Redis,
    see shared_cache()): what one worker puts there serves the others, for at most
    `shared_seconds` (default `max_age`) and never longer than `max_age` after it was made.
    `loaded` prepares a value read from there (e.g. makes arrays read-only)."""

    def __init__(
        self,
        size: Callable[[], int],
        max_age: Callable[[], float] = lambda: 0.0,
        shared: str = "",
        shared_seconds: Callable[[], float] | None = None,
        loaded: Callable[[V], V] = lambda value: value,
    ) -> None:
        # Callables: settings are read at use, so tests (and override_settings) can change them.
        self._size, self._max_age = size, max_age
        self._shared, self._shared_seconds, self._loaded = shared, shared_seconds or max_age, loaded
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.shared_hits = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            max_age = self._max_age()
            if entry is not None and not (max_age and time.monotonic() - entry[0] > max_age):
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
        value = self._get_shared(key, max_age)
        with self._lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
                self.shared_hits += 1
        return value

    def _get_shared(self, key: Hashable, max_age: float) -> V | None:
        if not self._shared or self._size() <= 0:
            return None
        found = shared_get(self._shared, key)
        if found is None:
            return None
        made, value = found  # made: wall-clock time, the same on every machine (roughly)
        age = max(0.0, time.time() - made)
        if max_age and age > max_age:
            return None
        value = self._loaded(value)
        self._put_local(key, value, age)
        return value

    def put(self, key: Hashable, value: V) -> None:
        if self._size() <= 0:
            return
        self._put_local(key, value, 0.0)
        if self._shared:
            shared_set(self._shared, key, (time.time(), value), self._shared_seconds() or SHARED_SECONDS)

    def _put_local(self, key: Hashable, value: V, age: float) -> None:
        size = self._size()
        with self._lock:
            self._entries[key] = (time.monotonic() - age, value)
            self._entries.move_to_end(key)
            while len(self._entries) > size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = self.shared_hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "entries": len(self._entries)}


text_vectors: LRUCache[dict[str, np.ndarray]] = LRUCache(
    lambda: settings.SEARCH_QUERY_VECTOR_CACHE_SIZE, shared="text_vectors", loaded=lambda v: frozen(v)
)
photo_vectors: LRUCache[dict[str, np.ndarray]] = LRUCache(
    lambda: settings.SEARCH_QUERY_VECTOR_CACHE_SIZE, shared="photo_vectors", loaded=lambda v: frozen(v)
)
result_pages: LRUCache[Any] = LRUCache(
    lambda: settings.SEARCH_RESULT_CACHE_SIZE,
    lambda: float(settings.SEARCH_RESULT_CACHE_SECONDS),
    shared="result_pages",
)
CACHES = {"text_vectors": text_vectors, "photo_vectors": photo_vectors, "result_pages": result_pages}
# Word lookups: a few bytes each; on whenever result pages are (one switch for the search caches).
WORD_LOOKUPS = 20_000
word_lookups: LRUCache[tuple[Any]] = LRUCache(lambda: WORD_LOOKUPS if result_pages_enabled() else 0)

# The catalogue version the current search runs under (at_version); None: not known, look up.
_version: ContextVar[int | None] = ContextVar("catalogue_version", default=None)


def clear_all() -> None:
    """Empty this process's caches (the shared level keeps its entries; they expire)."""
    global _shared_down_until
    for cache in CACHES.values():
        cache.clear()
    word_lookups.clear()
    _shared_down_until = 0.0


def stats() -> dict[str, dict[str, int]]:
    return {name: cache.stats() for name, cache in CACHES.items()}


# --- the shared level (Redis) ----------------------------------------------------------------
# Query vectors never go stale; they are kept an hour in Redis to bound its memory (a
# vector is about 2 KB: an hour of 100 new wordings a second is under 1 GB).
SHARED_SECONDS = 3600
# After Redis fails to answer, the workers leave it alone this long: an outage costs one
# search one socket timeout, not every search.
SHARED_RETRY_SECONDS = 10.0
_shared_down_until = 0.0
logger = logging.getLogger(__name__)


def shared_configured() -> bool:
    """The shared level is on (SEARCH_SHARED_CACHE) and has a place (REDIS_URL: CACHES["search"])."""
    return settings.SEARCH_SHARED_CACHE and "search" in settings.CACHES


def shared_cache() -> BaseCache | None:
    """The cache shared by the web workers (settings.CACHES["search"], Redis), or None: not
    configured, or unreachable a moment ago."""
    if not shared_configured() or time.monotonic() < _shared_down_until:
        return None
    return caches["search"]


def _shared_failed(action: str) -> None:
    global _shared_down_until
    _shared_down_until = time.monotonic() + SHARED_RETRY_SECONDS
    logger.warning(
        "search cache: Redis did not answer a %s; searching without the shared cache for %.0f s",
        action,
        SHARED_RETRY_SECONDS,
        exc_info=True,
    )


def shared_key(name: str, key: Hashable) -> str:
    """A key's name in the shared cache. Keys are tuples of strings, numbers and frozen
    dataclasses, whose repr is the same in every process; a page's key holds the catalogue
    version, and the database's identity (database_identity) keeps two databases apart."""
    return f"{name}:{hashlib.blake2b(repr(key).encode(), digest_size=20).hexdigest()}"


def shared_get(name: str, key: Hashable) -> Any:
    cache = shared_cache()
    if cache is None:
        return None
    try:
        return cache.get(shared_key(name, key))
    except Exception:  # noqa: BLE001 - any Redis or network error: search on without it
        _shared_failed("read")
        return None


def shared_set(name: str, key: Hashable, value: Any, seconds: float) -> None:
    cache = shared_cache()
    if cache is None:
        return
    try:
        cache.set(shared_key(name, key), value, timeout=max(1, int(seconds)))
    except Exception:  # noqa: BLE001
        _shared_failed("write")


def clear_shared() -> int:
    """Delete every entry of the shared level (the benchmarks start cold; after restoring a
    database backup, docs/search.md); returns how many."""
    if "search" not in settings.CACHES:
        return 0
    config = settings.CACHES["search"]
    client = redis.Redis.from_url(str(config["LOCATION"]))
    keys = list(client.scan_iter(f"{config.get('KEY_PREFIX', '')}:*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    return len(keys)


def database_identity() -> tuple[int, int]:
    """(cluster's system identifier, database oid) of the search database: a page cached from
    another database (a recreated one, whose versions start again at 0) is never read. A
    streaming replica has its primary's. Read once per connection."""
    connection = search_connection()
    raw = connection.connection
    cached = getattr(connection, "_vitrine_identity", None)
    if cached is not None and cached[0] is raw and raw is not None:
        return cached[1]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT system_identifier FROM pg_control_system()), "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        identity = tuple(int(x) for x in cursor.fetchone())
    connection._vitrine_identity = (connection.connection, identity)  # type: ignore[attr-defined]
    return identity  # type: ignore[return-value]


def model_key(model: Any) -> tuple:
    """What identifies a model's vectors: its row and what it loads (a reused id never matches)."""
    return (model.pk, json.dumps(model.spec, sort_keys=True, default=str))


def image_digest(image: Image.Image) -> str:
    """The decoded pixels' digest: the same photo uploaded twice (any file name) matches."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def vectors_digest(vectors: dict[str, np.ndarray]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for column in sorted(vectors):
        h.update(column.encode())
        h.update(np.ascontiguousarray(vectors[column], dtype=np.float32).tobytes())
    return h.hexdigest()


def frozen(vectors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The vectors made read-only: a cached array is shared by every later search."""
    for v in vectors.values():
        v.setflags(write=False)
    return vectors


def catalogue_version() -> int | None:
    """The catalogue's version as the search database sees it; None inside a transaction, where
    a page must not be cached: the transaction's own uncommitted writes could be rolled back
    under a version number that another write then reuses."""
    connection = search_connection()
    if connection.in_atomic_block:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(n), 0) FROM catalog_catalogueversion")
        return int(cursor.fetchone()[0])


def result_pages_enabled() -> bool:
    return settings.SEARCH_RESULT_CACHE_SIZE > 0


@contextmanager
def at_version(version: int | None) -> Iterator[None]:
    """Inside this block per_version() answers from what was looked up under `version` (the
    catalogue version read before the search); None: every lookup goes to the database."""
    token = _version.set(version)
    try:
        yield
    finally:
        _version.reset(token)


def per_version(kind: str, keys: Sequence[str], lookup: Callable[[list[str]], dict[str, V]]) -> dict[str, V | None]:
    """{key: lookup's value, None where lookup gave none} for each of `keys`. `lookup` reads
    the catalogue (its words, synonyms), so under one catalogue version (at_version) its value
    for a key never changes: only keys not looked up before under this version are passed to
    it, in one call. Outside at_version it is called with every key."""
    version = _version.get()
    if version is None:
        found = lookup(list(keys))
        return {key: found.get(key) for key in keys}
    answers: dict[str, V | None] = {}
    missing: list[str] = []
    for key in keys:
        entry = word_lookups.get((version, kind, key))
        if entry is None:
            missing.append(key)
        else:
            answers[key] = entry[0]
    if missing:
        found = lookup(missing)
        for key in missing:
            answers[key] = found.get(key)
            word_lookups.put((version, kind, key), (answers[key],))
    return answers


def reports_cache_use(view: Callable[..., Any]) -> Callable[..., Any]:
    """A search view whose response says which caches answered it: header X-Search-Cache,
    e.g. "result_pages=hit" or "text_vectors=hit, result_pages=miss" ("none": no cache asked)."""

    @wraps(view)
    def wrapped(request: Any, *args: Any, **kwargs: Any) -> Any:
        before = stats()
        response = view(request, *args, **kwargs)
        parts = []
        for name, now in stats().items():
            if now["misses"] > before[name]["misses"]:
                parts.append(f"{name}=miss")
            elif now["hits"] > before[name]["hits"]:
                parts.append(f"{name}=hit")
        response["X-Search-Cache"] = ", ".join(parts) or "none"
        return response

    return wrapped
