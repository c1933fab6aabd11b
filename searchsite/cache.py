"""Django's Redis cache backend, with its Redis clients kept and one round trip per incr().

Django's RedisCacheClient builds a new redis.Redis object for every cache call, which
registers a couple of hundred response callbacks one by one: about 0.1 ms of CPU a call, and
a search makes two to four (the rate limiter's counter, the search caches' shared level).
A redis.Redis object is thread-safe and stands for its connection pool, which Django keeps
anyway, so one per pool serves every call. incr() runs as one script instead of EXISTS then
INCR: one round trip, and a key that expires between the two is never re-created without its
expiry (the rate limiter's counters rely on expiring).
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

INCR_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return false
"""


class KeptClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}
        self._incr: Any = None

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # RedisCacheClient's own helpers, which django-stubs do not declare
        index = self._get_connection_pool_index(write)  # type: ignore[attr-defined]
        client = self._clients.get(index)
        if client is None:
            pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
            client = self._clients[index] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client

    def incr(self, key: Any, delta: int) -> int:
        client = self.get_client(key, write=True)
        if self._incr is None:
            self._incr = client.register_script(INCR_IF_EXISTS)
        value = self._incr(keys=[key], args=[delta], client=client)
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return int(value)


class RedisCache(DjangoRedisCache):
    """settings.CACHES' BACKEND "searchsite.cache.RedisCache": django.core.cache's
    RedisCache with KeptClient."""

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = KeptClient
