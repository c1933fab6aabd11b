"""Per-process caches in front of search (docs/search.md, "Caches").

Shop search repeats itself: a few wordings and photos make up much of the traffic. Three
caches, each in the web worker's own memory (a hit costs no network round trip):

* query vectors of words, keyed by (model, words, columns): the text tower runs once per
  wording per worker;
* query vectors of a photo, keyed by (model, the decoded pixels' digest);
* whole result pages, keyed by (catalogue version, model, query, filters, page, ...).

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
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from functools import wraps
from typing import Any, Generic, TypeVar

import numpy as np
from django.conf import settings
from PIL import Image

from searchsite.db_router import search_connection

V = TypeVar("V")


class LRUCache(Generic[V]):
    """A bounded, thread-safe least-recently-used map whose entries expire after `max_age` s
    (0: never). Counts its hits and misses (the load test reports them)."""

    def __init__(self, size: Callable[[], int], max_age: Callable[[], float] = lambda: 0.0) -> None:
        # Callables: settings are read at use, so tests (and override_settings) can change them.
        self._size, self._max_age = size, max_age
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            max_age = self._max_age()
            if entry is None or (max_age and time.monotonic() - entry[0] > max_age):
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: Hashable, value: V) -> None:
        size = self._size()
        if size <= 0:
            return
        with self._lock:
            self._entries[key] = (time.monotonic(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "entries": len(self._entries)}


text_vectors: LRUCache[dict[str, np.ndarray]] = LRUCache(lambda: settings.SEARCH_QUERY_VECTOR_CACHE_SIZE)
photo_vectors: LRUCache[dict[str, np.ndarray]] = LRUCache(lambda: settings.SEARCH_QUERY_VECTOR_CACHE_SIZE)
result_pages: LRUCache[Any] = LRUCache(
    lambda: settings.SEARCH_RESULT_CACHE_SIZE, lambda: float(settings.SEARCH_RESULT_CACHE_SECONDS)
)
CACHES = {"text_vectors": text_vectors, "photo_vectors": photo_vectors, "result_pages": result_pages}


def clear_all() -> None:
    for cache in CACHES.values():
        cache.clear()


def stats() -> dict[str, dict[str, int]]:
    return {name: cache.stats() for name, cache in CACHES.items()}


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
