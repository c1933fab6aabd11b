"""Where one API search spends its time, in-process: SQL round trips and CPU per request.

Runs GET /api/search through Django's test client (no HTTP, no gunicorn) against the demo
catalogue embedded by the default model, as the load test's searches are (k = 24), in
three states of the search caches:

* ``page hit``: the same search again; its result page is in the cache;
* ``page miss, vector hit``: the result page is dropped before each search, the words'
  query vector is still cached (a popular wording on a new page or filter);
* ``full miss``: every cache is empty before each search (a wording never seen);
* ``page from the shared level``: with the shared cache (REDIS_URL), the worker's own
  caches are empty, the page is in Redis (another worker searched it).

For each it counts the SQL statements (CaptureQueriesContext) and times the CPU per
search (time.process_time, one torch thread like a web worker). ``--profile`` prints the
cProfile functions with the most own time for each state.

    .venv/bin/python -m bench.search_profile [--repeats 200] [--mode hybrid] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import time
import urllib.parse
from collections.abc import Callable

from bench.common import ROOT, bench_env, log, setup_django, stats_ms, table, write_result

# The load test's limiter budget: the limiter runs (and costs its cache round trip) on each search.
RATE_LIMIT = "1000000/m"


def queries_of_demo() -> list[str]:
    lines = (ROOT / "demo/eval/queries.jsonl").read_text().splitlines()
    found = (json.loads(x).get("query") for x in lines if x.strip())
    return list(dict.fromkeys(q for q in found if isinstance(q, str)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--mode", default="hybrid")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions per state")
    args = parser.parse_args()
    started = time.time()
    os.environ["SEARCH_RATE_LIMIT"] = os.environ["PHOTO_SEARCH_RATE_LIMIT"] = RATE_LIMIT
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    bench_env()
    setup_django()
    import torch
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.demo_catalogue import ensure_demo_catalogue
    from catalog import search_cache

    torch.set_num_threads(1)
    ensure_demo_catalogue(embed=True)
    client = Client(REMOTE_ADDR="10.0.0.1", HTTP_HOST="127.0.0.1")
    queries = queries_of_demo()

    def get(q: str) -> None:
        path = "/api/search?" + urllib.parse.urlencode({"q": q, "mode": args.mode, "k": 24})
        response = client.get(path)
        assert response.status_code == 200, response.content[:300]

    search_cache.clear_shared()  # cold: pages another run left in Redis would skip search() below
    for q in queries:  # warm: every wording encoded once, the model loaded, connections open
        get(q)

    def another_worker() -> None:  # its own caches empty; the shared level (Redis) is not
        for cache in search_cache.CACHES.values():
            cache.clear()
        search_cache.word_lookups.clear()

    def page_miss() -> None:
        search_cache.result_pages.clear()
        search_cache.clear_shared()

    def full_miss() -> None:
        search_cache.clear_all()
        search_cache.clear_shared()

    states: dict[str, tuple[Callable[[int], None], Callable[[], None]]] = {
        "page hit": (lambda i: get(queries[0]), lambda: None),
        "page miss, vector hit": (lambda i: get(queries[i % len(queries)]), page_miss),
        "full miss": (lambda i: get(queries[i % len(queries)]), full_miss),
    }
    if search_cache.shared_configured():
        states["page from the shared level"] = (lambda i: get(queries[i % len(queries)]), another_worker)
    rows = []
    for name, (one, before) in states.items():
        for q in queries:  # every page searched once: in the shared level, for the last state
            get(q)
        before()
        with CaptureQueriesContext(connection) as captured:
            one(0)
        statements = [q["sql"] for q in captured.captured_queries]
        cpu, wall = [], []
        profiler = cProfile.Profile() if args.profile else None
        for i in range(args.repeats):
            before()
            c0, w0 = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            one(i)
            if profiler:
                profiler.disable()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        rows.append(
            {
                "state": name,
                "sql_statements": len(statements),
                "cpu_ms_mean": round(1000 * sum(cpu) / len(cpu), 2),
                "wall_p50_ms": stats_ms(wall)["p50"],
                "wall_p99_ms": stats_ms(wall)["p99"],
            }
        )
        log(f"{name}: {len(statements)} SQL statements:\n  " + "\n  ".join(s[:140] for s in statements))
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            print(f"\n--- cProfile, {name}, {args.repeats} searches, by own time ---\n{out.getvalue()}")
    load = os.getloadavg()
    shared = search_cache.shared_configured()
    table(
        rows,
        title=f"GET /api/search mode={args.mode}, in-process, {args.repeats} searches each, "
        f"shared cache {'on' if shared else 'off'}, load {load[0]:.2f}",
    )
    write_result(
        "search_profile",
        {"mode": args.mode, "repeats": args.repeats, "shared_cache": shared, "rows": rows, "load_avg": load},
        started,
    )


if __name__ == "__main__":
    main()
