"""searchsite.cache.RedisCache: Django's Redis cache with its clients kept, against the real Redis."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis
from django.core.cache import caches


@pytest.fixture
def cache(settings):
    url = settings.REDIS_URL or "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url).ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"these tests need Redis at {url}: {exc}")
    prefix = f"test-cache-{uuid.uuid4().hex}"
    settings.CACHES = {
        **settings.CACHES,
        "kept": {"BACKEND": "searchsite.cache.RedisCache", "LOCATION": url, "KEY_PREFIX": prefix},
    }
    yield caches["kept"]
    raw = redis.Redis.from_url(url)
    for key in raw.scan_iter(f"{prefix}:*"):
        raw.delete(key)


def test_one_client_serves_every_call(cache):
    client = cache._cache.get_client("a", write=True)
    cache.set("a", {"x": 1})
    assert cache.get("a") == {"x": 1}
    assert cache._cache.get_client("b") is client
    assert cache._cache.get_client(None, write=True) is client


def test_the_client_is_shared_by_threads(cache):
    errors: list[BaseException] = []

    def count() -> None:
        try:
            for _ in range(50):
                cache.incr("n")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    cache.set("n", 0)
    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and cache.get("n") == 200


def test_incr_counts_and_refuses_a_missing_key_as_django_does(cache):
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")
    assert cache.get("missing") is None  # not created by the refused incr
    cache.set("n", 5)
    assert cache.incr("n") == 6
    assert cache.incr("n", 10) == 16
    assert cache.get("n") == 16


def test_incr_keeps_the_expiry(cache):
    assert cache.add("counter", 1, timeout=60)
    assert cache.incr("counter") == 2
    raw = cache._cache.get_client("counter")
    key = cache.make_key("counter")
    assert 0 < raw.pttl(key) <= 60_000
    raw.delete(key)  # as if it expired
    with pytest.raises(ValueError):
        cache.incr("counter")
    assert raw.exists(key) == 0  # not re-created without an expiry
