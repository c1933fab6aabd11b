"""Autocomplete and typo-correction latency at catalogue scale.

    VITRINE_DATA_DIR=/tmp/suggest-bench .venv/bin/python -m bench.suggest_latency --products 100000 --log-rows 1000000

Fills the benchmark database with synthetic products (titles drawn from the demo
catalogue's title words, with its word frequencies, and its categories; no photos or
vectors: neither endpoint reads them) up to --products, and a synthetic search log up to
--log-rows searches (queries of 1-3 of those words, Zipf-distributed popularity, a few
hundred thousand visitors over SEARCH_LOG_DAYS days, 30% of searches with a click), then:

- catalog.popularity.refresh: popular queries and clicked products rebuilt from that log
  (what Celery beat runs every POPULARITY_REFRESH_MINUTES), timed once;

- GET /api/suggest?q=<prefix> (popular past queries, categories, titles) for every prefix a shopper types on the way to a query
  (2 letters and up, for --queries queries sampled from the titles), through Django's
  whole request stack in this process (middleware, rate limiting, JSON; no socket);
- catalog.suggest.correct_query on misspelt words (one letter swapped, dropped, doubled or
  replaced) of the same queries: the extra work a corrected search does before it ranks;
- a keyword-mode search of the same queries, alone and with its facets
  (catalog.facets.search_facets over the whole full-text match set, the costliest basis).

Target: p99 <= 50 ms for /api/suggest at 100k products.
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from collections import Counter
from typing import Any

import numpy as np

from bench.common import DEMO_CSV, log, setup_django, stats_ms, table, write_result

TARGET_P99_MS = 50.0


def demo_vocabulary() -> tuple[list[str], list[int], list[str]]:
    """Title words with their counts, and the categories, of the demo catalogue."""
    from catalog.suggest import WORD

    counts: Counter[str] = Counter()
    cats: set[str] = set()
    with DEMO_CSV.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            counts.update(w.lower() for w in WORD.findall(row["title"]))
            cats.add(row["category"])
    words = sorted(counts)
    return words, [counts[w] for w in words], sorted(cats)


def synthetic_titles(n: int, rng: random.Random) -> list[tuple[str, str]]:
    words, weights, cats = demo_vocabulary()
    rows = []
    for _ in range(n):
        category = rng.choice(cats)
        title = " ".join(rng.choices(words, weights, k=rng.randint(3, 6)))
        rows.append((title.capitalize() + ", " + category.lower(), category))
    return rows


def fill(products: int, rng: random.Random) -> int:
    from django.db import connection, transaction

    from catalog.models import Product

    have = Product.objects.count()
    if have >= products:
        return have
    log(f"adding {products - have:,} synthetic products (setup, not timed)")
    rows = synthetic_titles(products - have, rng)
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(rows), 5000):
            chunk = rows[start : start + 5000]
            cursor.executemany(
                "INSERT INTO catalog_product (sku, title, description, category, price, image, thumbnail,"
                " image_hash, content_hash, created_at, updated_at)"
                " VALUES (%s, %s, '', %s, %s, '', '', '', '', now(), now())",
                [
                    (f"SYN-{have + start + i:07d}", t, c, round(rng.uniform(5, 400), 2))
                    for i, (t, c) in enumerate(chunk)
                ],
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_product")
        cursor.execute("ANALYZE catalog_searchword")
    return Product.objects.count()


def fill_log(rows: int, products: int, rng: random.Random) -> int:
    """Synthetic searches (and clicks) up to `rows`, spread over SEARCH_LOG_DAYS days."""
    import uuid

    from django.conf import settings
    from django.db import connection, transaction

    from catalog.models import Product, SearchLog

    have = SearchLog.objects.count()
    if have >= rows:
        return have
    log(f"adding {rows - have:,} synthetic searches (setup, not timed)")
    words, weights, _ = demo_vocabulary()
    distinct = [" ".join(rng.choices(words, weights, k=rng.choice((1, 2, 2, 3)))) for _ in range(50_000)]
    zipf = np.random.default_rng(rng.randrange(2**32))
    popularity = 1.0 / np.arange(1, len(distinct) + 1)
    picks = zipf.choice(len(distinct), size=rows - have, p=popularity / popularity.sum())
    product_ids = list(Product.objects.order_by("pk").values_list("pk", flat=True)[:products])
    now = time.time()
    span = settings.SEARCH_LOG_DAYS * 86400
    with transaction.atomic(), connection.cursor() as cursor:
        searches = cursor.cursor.copy(
            "COPY catalog_searchlog (id, created_at, kind, text, mode, page, results, took_ms, source, corrected, visitor)"
            " FROM STDIN"
        )
        clicks = []
        with searches as copy:
            for pick in picks:
                sid = uuid.uuid4()
                at = now - rng.random() * span
                photo = rng.random() < 0.1
                results = 0 if rng.random() < 0.08 else rng.randint(1, 200)
                copy.write_row(
                    (
                        sid,
                        time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(at)),
                        "photo" if photo else "text",
                        "" if photo else distinct[pick],
                        "hybrid",
                        1,
                        results,
                        12.5,
                        "page",
                        rng.random() < 0.03,
                        f"{rng.randrange(300_000):016x}",
                    )
                )
                if results and rng.random() < 0.3:
                    clicks.append(
                        (
                            sid,
                            rng.choice(product_ids),
                            rng.randint(1, 10),
                            time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(at + 20)),
                        )
                    )
        with cursor.cursor.copy(
            "COPY catalog_searchclick (search_id, product_id, rank, created_at) FROM STDIN"
        ) as copy:
            for row in clicks:
                copy.write_row(row)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_searchlog")
        cursor.execute("ANALYZE catalog_searchclick")
    return SearchLog.objects.count()


def typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word) - 1)
    kind = rng.choice(["swap", "drop", "double", "replace"])
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    if kind == "double":
        return word[: i + 1] + word[i] + word[i + 1 :]
    return word[:i] + rng.choice("aeioustrn") + word[i + 1 :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200, help="queries typed letter by letter")
    parser.add_argument("--log-rows", type=int, default=1_000_000, help="searches in the synthetic search log")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.time()
    setup_django()
    from django.test import Client

    from catalog.facets import search_facets
    from catalog.models import PopularQuery, Product, ProductPopularity
    from catalog.popularity import refresh
    from catalog.search import search
    from catalog.suggest import WORD, correct_query

    rng = random.Random(args.seed)
    count = fill(args.products, rng)
    log_rows = fill_log(args.log_rows, count, rng)
    t0 = time.perf_counter()
    refresh()
    refresh_s = time.perf_counter() - t0
    popular, clicked = PopularQuery.objects.count(), ProductPopularity.objects.count()
    log(
        f"refresh of {log_rows:,} logged searches: {refresh_s:.1f} s, {popular:,} popular queries, "
        f"{clicked:,} clicked products"
    )
    rng = random.Random(args.seed + 1)  # the same queries whether or not this run filled the database
    picks = [f"SYN-{i:07d}" for i in rng.sample(range(count), args.queries)]
    titles = list(Product.objects.filter(sku__in=picks).order_by("sku").values_list("title", flat=True))
    queries = [" ".join(WORD.findall(t)[: rng.randint(1, 3)]).lower() for t in titles]
    prefixes = [q[:n] for q in queries for n in range(2, len(q) + 1) if not q[n - 1 : n].isspace()]
    client = Client(HTTP_HOST="127.0.0.1")
    for p in prefixes[:50]:  # warm connections and plans
        client.get("/api/suggest", {"q": p})

    suggest_s, answered, with_past = [], 0, 0
    for p in prefixes:
        t0 = time.perf_counter()
        response = client.get("/api/suggest", {"q": p})
        suggest_s.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.content
        found = response.json()["suggestions"]
        answered += bool(found)
        with_past += any(s["kind"] == "query" for s in found)

    misspelt = []
    for q in queries:
        long_words = [w for w in q.split() if len(w) >= 5]
        if long_words:
            w = rng.choice(long_words)
            misspelt.append(q.replace(w, typo(w, rng), 1))
    correct_s, fixed = [], 0
    for q in misspelt:
        t0 = time.perf_counter()
        correction = correct_query(q)
        correct_s.append(time.perf_counter() - t0)
        fixed += correction is not None

    search_s, facets_s, matched = [], [], []
    for q in queries:
        t0 = time.perf_counter()
        result = search(q, mode="keyword", k=24)
        t1 = time.perf_counter()
        facets = search_facets(result)
        t2 = time.perf_counter()
        search_s.append(t1 - t0)
        facets_s.append(t2 - t1)
        matched.append(facets.matched)

    rows: list[dict[str, Any]] = [
        {
            "operation": "GET /api/suggest (typing, 2+ letters)",
            **stats_ms(suggest_s),
            "answered": f"{answered}/{len(prefixes)} ({with_past} with past queries)",
        },
        {
            "operation": "correct_query (one misspelt word)",
            **stats_ms(correct_s),
            "answered": f"{fixed}/{len(misspelt)} corrected",
        },
        {"operation": "keyword search (24 hits)", **stats_ms(search_s), "answered": ""},
        {
            "operation": "its facets (full-text match set)",
            **stats_ms(facets_s),
            "answered": f"median {int(np.median(matched)):,} matched",
        },
    ]
    table(
        rows,
        ["operation", "n", "p50", "p90", "p99", "mean", "answered"],
        title=f"{count:,} products, {log_rows:,} logged searches; latency in ms",
    )
    p99 = rows[0]["p99"]
    verdict = "meets" if p99 <= TARGET_P99_MS else "misses"
    print(f"/api/suggest p99 {p99} ms {verdict} the {TARGET_P99_MS:.0f} ms target")
    write_result(
        "suggest_latency",
        {
            "products": count,
            "log_rows": log_rows,
            "refresh_s": round(refresh_s, 2),
            "popular_queries": popular,
            "clicked_products": clicked,
            "rows": rows,
            "target_p99_ms": TARGET_P99_MS,
            "meets_target": p99 <= TARGET_P99_MS,
        },
        started,
    )


if __name__ == "__main__":
    main()
