"""Autocomplete and typo-correction latency at catalogue scale.

    VITRINE_DATA_DIR=/tmp/suggest-bench .venv/bin/python -m bench.suggest_latency --products 100000

Fills the benchmark database with synthetic products (titles drawn from the demo
catalogue's title words, with its word frequencies, and its categories; no photos or
vectors: neither endpoint reads them) up to --products, then:

- GET /api/suggest?q=<prefix> for every prefix a shopper types on the way to a query
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
                [(f"SYN-{have + start + i:07d}", t, c, round(rng.uniform(5, 400), 2)) for i, (t, c) in enumerate(chunk)],
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_product")
        cursor.execute("ANALYZE catalog_searchword")
    return Product.objects.count()


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
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.time()
    setup_django()
    from django.test import Client

    from catalog.models import Product
    from catalog.facets import search_facets
    from catalog.search import search
    from catalog.suggest import WORD, correct_query

    rng = random.Random(args.seed)
    count = fill(args.products, rng)
    rng = random.Random(args.seed + 1)  # the same queries whether or not this run filled the database
    picks = [f"SYN-{i:07d}" for i in rng.sample(range(count), args.queries)]
    titles = list(Product.objects.filter(sku__in=picks).order_by("sku").values_list("title", flat=True))
    queries = [" ".join(WORD.findall(t)[: rng.randint(1, 3)]).lower() for t in titles]
    prefixes = [q[:n] for q in queries for n in range(2, len(q) + 1) if not q[n - 1 : n].isspace()]
    client = Client(HTTP_HOST="127.0.0.1")
    for p in prefixes[:50]:  # warm connections and plans
        client.get("/api/suggest", {"q": p})

    suggest_s, answered = [], 0
    for p in prefixes:
        t0 = time.perf_counter()
        response = client.get("/api/suggest", {"q": p})
        suggest_s.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.content
        answered += bool(response.json()["suggestions"])

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

    rows = [
        {"operation": "GET /api/suggest (typing, 2+ letters)", **stats_ms(suggest_s),
         "answered": f"{answered}/{len(prefixes)}"},
        {"operation": "correct_query (one misspelt word)", **stats_ms(correct_s),
         "answered": f"{fixed}/{len(misspelt)} corrected"},
        {"operation": "keyword search (24 hits)", **stats_ms(search_s), "answered": ""},
        {"operation": "its facets (full-text match set)", **stats_ms(facets_s),
         "answered": f"median {int(np.median(matched)):,} matched"},
    ]
    table(rows, ["operation", "n", "p50", "p90", "p99", "mean", "answered"],
          title=f"{count:,} products; latency in ms")
    p99 = rows[0]["p99"]
    verdict = "meets" if p99 <= TARGET_P99_MS else "misses"
    print(f"/api/suggest p99 {p99} ms {verdict} the {TARGET_P99_MS:.0f} ms target")
    write_result("suggest_latency", {"products": count, "rows": rows, "target_p99_ms": TARGET_P99_MS,
                                     "meets_target": p99 <= TARGET_P99_MS}, started)


if __name__ == "__main__":
    main()
