"""Popularity from the search log: popular past queries (autocomplete) and clicked products
(an optional ranking signal, SEARCH_POPULARITY_WEIGHT).

Both are aggregates of catalog_searchlog and catalog_searchclick, rebuilt whole by
`refresh()` (Celery beat every POPULARITY_REFRESH_MINUTES, and right after every prune), so
they never hold a search the log no longer has. Reading either is one indexed query.

Visitors. The log keeps no IP address or cookie; each search carries `visitor`, a keyed
hash of the client's address (as the rate limits see it: an IPv6 /64 is one client) under a
salt that changes every UTC day and is deleted once the day is over (table
catalog_visitorsalt). The user agent is left out on purpose: one person with two browsers
stays one visitor, and shoppers behind one address count once, which errs on the side of
privacy. Within a day two searches with the
same hash came from the same client; across days nothing links them, and once the salt is
gone the hash cannot be traced back to an address. So visitors are counted per day: the same
person on three days counts three times. A query is offered to other shoppers only when
at least SUGGEST_POPULAR_MIN_VISITORS such visitor-days searched it, at least two of them
different visitors on the same day (never a query only one visitor typed), those searches
found results and their words were not corrected (a misspelling is never suggested).

Decay: a visitor-day (for a product: a visitor-day that clicked it) weighs
0.5 ** (age in days of its last search or click / POPULARITY_HALF_LIFE_DAYS).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import date

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from searchsite.security import client_key

# Longer searches are sentences, not queries worth offering to others.
MAX_QUERY_CHARS = 100
# The words as one normalised string: lower case, single spaces (what autocomplete matches).
NORMALISED = r"lower(regexp_replace(btrim({col}), '\s+', ' ', 'g'))"
DAY = "date_trunc('day', {col} AT TIME ZONE 'UTC')"
# Weighed by the age of the visitor-day's last search (or click).
DECAY = "power(0.5, greatest(0, extract(epoch FROM (now() - {at}))) / 86400.0 / %(half_life)s)"

POPULAR_QUERIES = f"""
    INSERT INTO catalog_popularquery (text, visitors, score, last_searched)
    SELECT q, sum(n), sum(n * {DECAY.format(at="last")}), max(last)
    FROM (SELECT q, day, count(DISTINCT visitor) AS n, max(created_at) AS last
          FROM (SELECT {NORMALISED.format(col="text")} AS q, {DAY.format(col="created_at")} AS day, visitor, created_at
                FROM catalog_searchlog
                WHERE kind = 'text' AND results > 0 AND NOT corrected AND visitor <> ''
                  AND text <> '' AND length(text) <= {MAX_QUERY_CHARS}) AS searches
          WHERE q <> '' GROUP BY q, day) AS per_day
    GROUP BY q
    HAVING sum(n) >= %(min_visitors)s AND max(n) >= 2"""

# A visitor-day that clicked a product counts once; clicks logged before visitors were
# hashed count once per search.
PRODUCT_POPULARITY = f"""
    INSERT INTO catalog_productpopularity (product_id, clicks, score)
    SELECT product_id, count(*), sum({DECAY.format(at="last")})
    FROM (SELECT c.product_id, max(c.created_at) AS last
          FROM catalog_searchclick c JOIN catalog_searchlog s ON s.id = c.search_id
          GROUP BY c.product_id, {DAY.format(col="c.created_at")},
                   CASE WHEN s.visitor = '' THEN s.id::text ELSE s.visitor END) AS clicks
    GROUP BY product_id"""

_salts: dict[date, bytes] = {}  # today's salt only, once read


def _salt(day: date) -> bytes:
    """The day's salt: the first search of the day makes it, every process reads the same row."""
    salt = _salts.get(day)
    if salt is None:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO catalog_visitorsalt (day, salt) VALUES (%s, %s) ON CONFLICT (day) DO NOTHING",
                [day, secrets.token_bytes(32)],
            )
            cursor.execute("SELECT salt FROM catalog_visitorsalt WHERE day = %s", [day])
            salt = bytes(cursor.fetchone()[0])
        _salts.clear()
        _salts[day] = salt
    return salt


def visitor_hash(request: HttpRequest) -> str:
    """16 hex characters that tell today's visitors apart and nothing more (module doc)."""
    return hashlib.blake2b(client_key(request).encode(), key=_salt(timezone.now().date()), digest_size=8).hexdigest()


def refresh() -> tuple[int, int]:
    """Rebuild both aggregates from the log as it is now; (popular queries, popular products)."""
    params = {
        "half_life": float(settings.POPULARITY_HALF_LIFE_DAYS),
        "min_visitors": max(2, settings.SUGGEST_POPULAR_MIN_VISITORS),
    }
    with transaction.atomic(), connection.cursor() as cursor:
        # Readers keep reading the old rows until this commits; a second refresh waits.
        cursor.execute("LOCK TABLE catalog_popularquery, catalog_productpopularity IN EXCLUSIVE MODE")
        cursor.execute("DELETE FROM catalog_visitorsalt WHERE day < %s", [timezone.now().date()])
        cursor.execute("DELETE FROM catalog_popularquery")
        cursor.execute(POPULAR_QUERIES, params)
        queries = cursor.rowcount
        cursor.execute("DELETE FROM catalog_productpopularity")
        cursor.execute(PRODUCT_POPULARITY, params)
        return queries, cursor.rowcount


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def popular_queries(typed: str, k: int) -> list[str]:
    """Up to `k` popular past queries that start with `typed` (normalised), most popular first."""
    start = normalise(typed)
    if not start or k < 1:
        return []
    like = start.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT text FROM catalog_popularquery WHERE text LIKE %s ORDER BY score DESC, text LIMIT %s", [like, k]
        )
        return [text for (text,) in cursor.fetchall()]


def product_popularity(product_ids: list[int]) -> list[tuple[int, float]]:
    """(product id, decayed clicks) of those of `product_ids` that were ever clicked, most first."""
    if not product_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT product_id, score FROM catalog_productpopularity WHERE product_id = ANY(%s)"
            " ORDER BY score DESC, product_id",
            [list(product_ids)],
        )
        return [(pid, float(score)) for pid, score in cursor.fetchall()]
