"""pgvector HNSW on synthetic 256-d unit vectors: latency and recall@10 vs exact, and rare filters.

Clustered, seeded vectors (1,000 Gaussian clusters), m=16, ef_construction=64, cosine
distance, the same index parameters the site uses. Ground truth is exact (numpy dot
products). A "rare" category holds 0.1% of rows, to show what a filtered HNSW scan
returns with and without hnsw.iterative_scan. Tables are kept between runs
(bench_hnsw_<n>); pass --rebuild to time the build again.

    .venv/bin/python -m bench.hnsw_recall [--sizes 100000,300000] [--rebuild]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import psycopg

from bench.common import bench_env, connect, log, scalar, setup_django, stats_ms, table, write_result

DIM = 256
CLUSTERS = 1000
RARE_FRACTION = 0.001
EF_SEARCHES = (40, 100, 200)
K = 10


def make_vectors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
    labels = rng.integers(0, CLUSTERS, n)
    x = centers[labels] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def build(conn: psycopg.Connection, n: int, x: np.ndarray, categories: np.ndarray, rebuild: bool) -> dict:
    table_name = f"bench_hnsw_{n}"
    exists = scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", [table_name])
    if exists and not rebuild:
        count = scalar(conn, f"SELECT count(*) FROM {table_name}")
        if count == n:
            log(f"{table_name}: reusing (pass --rebuild to time the build)")
            return {"reused": True}
    conn.execute(f"DROP TABLE IF EXISTS {table_name}")
    conn.execute(
        f"CREATE TABLE {table_name} (id int PRIMARY KEY, category int NOT NULL, embedding vector({DIM}) NOT NULL)"
    )
    t = time.perf_counter()
    with conn.cursor().copy(f"COPY {table_name} (id, category, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "int4", "vector"])
        for i in range(n):
            copy.write_row((i, int(categories[i]), x[i]))
    load_s = time.perf_counter() - t
    conn.execute("SET maintenance_work_mem = '4GB'")
    conn.execute("SET max_parallel_maintenance_workers = 1")  # 2 cores: leader + 1 worker
    log(f"{table_name}: loaded in {load_s:.1f} s; building HNSW ...")
    t = time.perf_counter()
    conn.execute(
        f"CREATE INDEX {table_name}_hnsw ON {table_name} USING hnsw (embedding vector_cosine_ops) "
        "WITH (m = 16, ef_construction = 64)"
    )
    build_s = time.perf_counter() - t
    conn.execute(f"CREATE INDEX {table_name}_cat ON {table_name} (category)")
    conn.execute(f"VACUUM ANALYZE {table_name}")
    size = scalar(conn, "SELECT pg_size_pretty(pg_relation_size(%s))", [f"{table_name}_hnsw"])
    log(f"{table_name}: HNSW built in {build_s:.1f} s ({size})")
    return {"reused": False, "copy_s": round(load_s, 1), "hnsw_build_s": round(build_s, 1), "index_size": size}


def knn(conn: psycopg.Connection, table_name: str, q: np.ndarray, where: str = "") -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            f"SELECT id FROM {table_name} {where} ORDER BY embedding <=> %s LIMIT {K}", [q]
        ).fetchall()
    ]


def run_size(conn: psycopg.Connection, n: int, queries: int, rebuild: bool) -> tuple[list[dict], list[dict], dict]:
    x, labels = make_vectors(n, seed=n)
    rng = np.random.default_rng(1)
    categories = (labels % 100) + 1
    rare = rng.random(n) < RARE_FRACTION
    categories[rare] = 0  # category 0: ~0.1% of rows, scattered over all clusters
    info = build(conn, n, x, categories, rebuild)
    table_name = f"bench_hnsw_{n}"
    # Queries: fresh points around the table's cluster centres (regenerated from its seed).
    centers = np.random.default_rng(n).standard_normal((CLUSTERS, DIM)).astype(np.float32)
    qrng = np.random.default_rng(7)
    qv = centers[qrng.integers(0, CLUSTERS, queries)] + 0.6 * qrng.standard_normal((queries, DIM)).astype(np.float32)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    exact = np.argsort(-(qv @ x.T), axis=1)[:, :K]

    rows = []
    conn.execute("SET hnsw.iterative_scan = off")
    conn.execute("SET enable_seqscan = off")
    for ef in EF_SEARCHES:
        conn.execute(f"SET hnsw.ef_search = {ef}")
        knn(conn, table_name, qv[0])  # warm
        times, recalls = [], []
        for i, q in enumerate(qv):
            t = time.perf_counter()
            got = knn(conn, table_name, q)
            times.append(time.perf_counter() - t)
            recalls.append(len(set(got) & set(exact[i].tolist())) / K)
        s = stats_ms(times)
        rows.append(
            {
                "rows": n,
                "query": f"HNSW ef_search={ef}",
                "p50_ms": s["p50"],
                "p99_ms": s["p99"],
                "recall@10": round(float(np.mean(recalls)), 4),
            }
        )
    conn.execute("RESET enable_seqscan")
    conn.execute("SET enable_indexscan = off")
    conn.execute("SET max_parallel_workers_per_gather = 1")
    times = []
    for q in qv[:20]:
        t = time.perf_counter()
        knn(conn, table_name, q)
        times.append(time.perf_counter() - t)
    s = stats_ms(times)
    rows.append({"rows": n, "query": "exact (seq scan)", "p50_ms": s["p50"], "p99_ms": s["p99"], "recall@10": 1.0})
    conn.execute("RESET enable_indexscan")

    # Rare filter: 0.1% of rows. Without iterative scan, HNSW returns ef_search candidates
    # and the filter then throws almost all of them away.
    n_rare = int(rare.sum())
    frows = []
    conn.execute("SET hnsw.ef_search = 100")
    conn.execute("SET enable_seqscan = off")
    conn.execute("SET enable_bitmapscan = off")
    for mode in ("off", "relaxed_order", "strict_order"):
        conn.execute(f"SET hnsw.iterative_scan = {mode}")
        times, counts = [], []
        for q in qv[:50]:
            t = time.perf_counter()
            # "category + 0" keeps the planner off the btree on category, as the site's filter
            # (on the vector table, without such an index) leaves it only the HNSW scan.
            got = knn(conn, table_name, q, where="WHERE category + 0 = 0")
            times.append(time.perf_counter() - t)
            counts.append(len(got))
        s = stats_ms(times)
        frows.append(
            {
                "rows": n,
                "rare_rows": n_rare,
                "iterative_scan": mode,
                "mean_rows_returned (k=10)": round(float(np.mean(counts)), 2),
                "min_rows": int(min(counts)),
                "p50_ms": s["p50"],
                "p99_ms": s["p99"],
            }
        )
    for setting in ("hnsw.iterative_scan", "enable_seqscan", "enable_bitmapscan", "hnsw.ef_search"):
        conn.execute(f"RESET {setting}")
    # What the planner does on its own with the rare filter (it may skip HNSW entirely).
    plan = conn.execute(
        f"EXPLAIN SELECT id FROM {table_name} WHERE category = 0 ORDER BY embedding <=> %s LIMIT {K}", [qv[0]]
    ).fetchall()
    info["rare_filter_default_plan"] = " / ".join(r[0].strip().split("'")[0] for r in plan if "Scan" in r[0])
    return rows, frows, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000", help="comma-separated row counts")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    started = time.time()
    bench_env()
    setup_django()
    conn = connect()
    log(scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'vector'") + " pgvector")
    all_rows, all_filter, builds = [], [], {}
    for n in (int(s) for s in args.sizes.split(",")):
        rows, frows, info = run_size(conn, n, args.queries, args.rebuild)
        all_rows += rows
        all_filter += frows
        builds[n] = info
    table(
        all_rows,
        title=f"HNSW (m=16, ef_construction=64) on {DIM}-d clustered unit vectors, {args.queries} queries, k={K}",
    )
    table(all_filter, title="Rare filter (category with 0.1% of rows), ef_search=100, HNSW plan forced")
    print(builds)
    write_result(
        "hnsw_recall", {"dim": DIM, "k": K, "search": all_rows, "rare_filter": all_filter, "builds": builds}, started
    )


if __name__ == "__main__":
    main()
