"""Search at catalogue scale (100k, 1M products): the site's API next to the raw pgvector query.

    .venv/bin/python -m bench.catalogue_scale --products 100000       (make bench-100k)
    .venv/bin/python -m bench.catalogue_scale --products 1000000      (make bench-1m)

Real rows: `--products` Product rows and one ProductVector each under the shipped default
model (the baseline: EfficientNet-Lite0 image features, MiniLM text vectors, at their real
dimensions), loaded with COPY. The vectors are synthetic but clustered like real ones:
cluster centres are the model's own vectors of 1,000 demo products (a photo and its title),
and each product is a centre plus noise (the same relative noise as bench/hnsw_recall.py),
so the demo's queries and photos land where products are, as they would on a real shop.
Titles are the centre product's title plus two demo words, so keyword search matches too;
categories are the centre product's, except RARE_CATEGORY: RARE_FRACTION of the products,
scattered over every cluster.

The database is kept between runs in its own data dir (var/bench-100k, var/bench-1m); the
HNSW indexes are built once (timed, with their size and the building backend's peak RSS)
and reused; `--rebuild-index` builds them again with the current settings.

Then, with gunicorn started as runsite starts it (searchsite.supervisor.gunicorn_argv), at
concurrency 1 and 16 on loopback, for each kind of search (KINDS): the API's latency
(HTTP, end to end), and in the same run the raw pgvector query that answers the same page
(RAW_SQL) with psycopg, same query vectors, same ef_search. Also: the query encoder alone
(its p50 is part of the text target), HNSW recall@10 against exact search (numpy over every
vector) at the shipped ef_search through catalog.search.vector_search, and the peak RSS of
every process (gunicorn master and workers, each Postgres process, this client).

`--variants halfvec,binary` (issue #10 item 2) also builds the other index choices on the
same rows and measures their build time, size, raw latency and recall beside the shipped one.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil
import psycopg

from bench.common import DEMO_CSV, ROOT, bench_env, connect, log, scalar, stats_ms, table, write_result

if TYPE_CHECKING:  # Django is set up in main(), before the models are imported
    from embeddings.models import EmbeddingModel

CENTRES = 1000  # demo products whose vectors are the cluster centres
NOISE = 0.6  # noise norm relative to a unit centre (cosine to its centre ~0.86), as hnsw_recall
RARE_CATEGORY = "Limited editions"
RARE_FRACTION = 0.005  # < 1% of products, scattered over every cluster
CHUNK = 50_000
PER_PAGE = 24
K_RECALL = 10
EXTRA_WORDS = 2
KINDS = ("text", "photo", "rare filter", "hybrid", "price sort", "page 5")
# The raw text query read as deep as search() reads it (SEARCH_CANDIDATES rows, not a page).
DEEP = "text, candidates deep"
TARGET_P99_MS = 50.0
TARGET_RECALL = 0.95


def default_data_dir(products: int) -> Path:
    label = f"{products // 1_000_000}m" if products % 1_000_000 == 0 else f"{products // 1000}k"
    return ROOT / "var" / f"bench-{label}"


# --- centres: the model's vectors of demo products (a child process runs the model) ----------


def demo_rows() -> list[dict[str, str]]:
    with DEMO_CSV.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def encode_centres(out: Path) -> None:
    """Child process: register the default model and save its vectors of CENTRES demo products."""
    from bench.common import setup_django

    setup_django()
    from PIL import Image

    from embeddings.registry import encoder_for, ensure_active_model

    model = ensure_active_model()
    encoder = encoder_for(model)
    rows = random.Random(3).sample(demo_rows(), CENTRES)
    images = [Image.open(DEMO_CSV.parent / r["image"]).convert("RGB") for r in rows]
    np.save(out / "centres_image.npy", encoder.encode_images(images).astype(np.float32))
    np.save(out / "centres_text.npy", encoder.encode_texts([r["title"] for r in rows]).astype(np.float32))
    (out / "centres.json").write_text(
        json.dumps([{k: r[k] for k in ("sku", "title", "category", "image")} for r in rows])
    )


def load_centres(data_dir: Path) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    if not (data_dir / "centres.json").exists():
        log("encoding the cluster centres (demo photos and titles) in a child process")
        subprocess.run(
            [sys.executable, "-m", "bench.catalogue_scale", "--encode-centres", str(data_dir)],
            cwd=ROOT,
            env=bench_env(),
            check=True,
        )
    return (
        np.load(data_dir / "centres_image.npy"),
        np.load(data_dir / "centres_text.npy"),
        json.loads((data_dir / "centres.json").read_text()),
    )


def around(centres: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    dim = centres.shape[1]
    x = centres[labels] + (NOISE / np.sqrt(dim)) * rng.standard_normal((len(labels), dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def chunk_rows(start: int, n: int, image_c: np.ndarray, text_c: np.ndarray) -> tuple[np.ndarray, ...]:
    """Products start..start+n-1 (0-based): deterministic per chunk, so exact search can
    regenerate them instead of holding 1M x 1,664 floats."""
    rng = np.random.default_rng([17, start])
    labels = rng.integers(0, len(text_c), n)
    image = around(image_c, labels, rng)
    text = around(text_c, labels, rng)
    rare = rng.random(n) < RARE_FRACTION
    prices = np.round(rng.uniform(5, 400, n), 2)
    words = rng.integers(0, 1 << 30, (n, EXTRA_WORDS))
    return labels, image, text, rare, prices, words


# --- loading -------------------------------------------------------------------------------


def load_catalogue(
    products: int, model_id: int, image_c: np.ndarray, text_c: np.ndarray, centres: list[dict[str, str]]
) -> dict:
    """COPY `products` Product rows and their ProductVectors (setup: timed, not a target)."""
    from pgvector.psycopg import register_vector  # noqa: F401

    from bench.suggest_latency import demo_vocabulary
    from embeddings.vector_index import drop_indexes

    vocab, _, _ = demo_vocabulary()
    now = dt.datetime.now(dt.timezone.utc)
    conn = connect()
    have = scalar(conn, "SELECT count(*) FROM catalog_product")
    if have == products and scalar(conn, "SELECT count(*) FROM embeddings_productvector") == products:
        log(f"reusing {products:,} products and vectors")
        return {"reused": True}
    if have:
        raise SystemExit(
            f"{have:,} products already in {os.environ['VITRINE_DATA_DIR']}, not {products:,}: "
            "remove that data dir (or pass another --data-dir)"
        )
    # Filling an HNSW index row by row is far slower than building it once afterwards.
    drop_indexes(model_id)
    started = time.perf_counter()
    t_products = t_vectors = 0.0
    for start in range(0, products, CHUNK):
        n = min(CHUNK, products - start)
        labels, image, text, rare, prices, words = chunk_rows(start, n, image_c, text_c)
        t = time.perf_counter()
        with conn.transaction():
            with conn.cursor().copy(
                "COPY catalog_product (id, sku, title, description, category, price, image, thumbnail,"
                " image_hash, content_hash, created_at, updated_at) FROM STDIN"
            ) as copy:
                for i in range(n):
                    c = centres[labels[i]]
                    extra = " ".join(vocab[w % len(vocab)] for w in words[i])
                    category = RARE_CATEGORY if rare[i] else c["category"]
                    copy.write_row(
                        (
                            start + i + 1,
                            f"SCALE-{start + i + 1:07d}",
                            f"{c['title']} {extra}",
                            "",
                            category,
                            f"{prices[i]:.2f}",
                            c["image"],
                            "",
                            "",
                            f"scale-{start + i + 1}",
                            now,
                            now,
                        )
                    )
        t_products += time.perf_counter() - t
        t = time.perf_counter()
        with conn.transaction():
            with conn.cursor().copy(
                "COPY embeddings_productvector (product_id, model_id, image_vec, text_vec, content_hash, category,"
                " price, updated_at) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "int8", "vector", "vector", "varchar", "varchar", "numeric", "timestamptz"])
                for i in range(n):
                    copy.write_row(
                        (
                            start + i + 1,
                            model_id,
                            image[i],
                            text[i],
                            f"scale-{start + i + 1}",
                            RARE_CATEGORY if rare[i] else centres[labels[i]]["category"],
                            Decimal(f"{prices[i]:.2f}"),
                            now,
                        )
                    )
        t_vectors += time.perf_counter() - t
        log(f"loaded {start + n:,} / {products:,}")
    conn.execute("SELECT setval(pg_get_serial_sequence('catalog_product', 'id'), %s)", [products])
    t = time.perf_counter()
    conn.execute("VACUUM ANALYZE catalog_product")
    conn.execute("VACUUM ANALYZE embeddings_productvector")
    conn.execute("ANALYZE catalog_searchword")
    return {
        "reused": False,
        "copy_products_s": round(t_products, 1),
        "copy_vectors_s": round(t_vectors, 1),
        "vacuum_analyze_s": round(time.perf_counter() - t, 1),
        "total_s": round(time.perf_counter() - started, 1),
    }


# --- peak RSS ------------------------------------------------------------------------------


class RssSampler:
    """Peak resident memory of named processes and their children, sampled every 0.2 s
    (a process's own VmHWM, where readable, is its true peak; Postgres counts the shared
    buffers a process touched in its RSS)."""

    def __init__(self) -> None:
        self.roots: dict[str, tuple[int, bool]] = {}
        self.peak: dict[tuple[str, int], tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, group: str, pid: int, children: bool) -> None:
        self.roots[group] = (pid, children)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _sample(self) -> None:
        for group, (pid, children) in list(self.roots.items()):
            try:
                root = psutil.Process(pid)
                procs = [root, *(root.children(recursive=True) if children else [])]
            except psutil.NoSuchProcess:
                continue
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    try:
                        hwm = next(
                            int(line.split()[1]) * 1024
                            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines()
                            if line.startswith("VmHWM")
                        )
                        rss = max(rss, hwm)
                    except (OSError, StopIteration):
                        pass
                    if group == "postgres":
                        name = _pg_role(p)
                    elif group == "gunicorn":
                        name = "gunicorn master" if p.pid == pid else "gunicorn worker"
                    else:
                        name = " ".join(p.cmdline()[1:3])[-60:]
                except psutil.Error:
                    continue
                key = (group, p.pid)
                if rss > self.peak.get(key, ("", 0))[1]:
                    self.peak[key] = (name, rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.2)

    def stop(self) -> list[dict]:
        self._sample()
        self._stop.set()
        self._thread.join(5)
        by_role: dict[tuple[str, str], list[int]] = defaultdict(list)
        for (group, _pid), (name, rss) in self.peak.items():
            by_role[(group, name)].append(rss)
        return [
            {"group": g, "process": name, "count": len(v), "peak_rss_mib": round(max(v) / 2**20, 1)}
            for (g, name), v in sorted(by_role.items())
        ]


def _pg_role(p: psutil.Process) -> str:
    cmd = " ".join(p.cmdline())
    if "postgres:" not in cmd:
        return "postmaster"
    role = cmd.split("postgres:", 1)[1].strip()
    # "user db 127.0.0.1(port) idle" -> "backend"; keep background workers' names
    return "backend" if "(" in role or "[local]" in role else role.split(" ")[0] + " " + " ".join(role.split(" ")[1:2])


# --- index build ---------------------------------------------------------------------------


def build_index(model: EmbeddingModel, column: str, storage: str, rebuild: bool, builds_file: Path) -> dict:
    """Build one of the model's HNSW indexes with the site's code (embeddings.vector_index)
    under `storage`, timed, with the building backends' peak RSS; an index already built is
    reused and reported with the figures of its build (kept in `builds_file`)."""
    from django.conf import settings
    from django.test import override_settings

    from bench.load_test import postgres_pid
    from embeddings.vector_index import create_indexes, index_name

    builds = json.loads(builds_file.read_text()) if builds_file.exists() else {}
    conn = connect()
    dim = model.column_dims()[column]
    with override_settings(HNSW_STORAGE=storage):
        name = index_name(column, model.pk)
        exists = scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", [name])
        if exists and not rebuild and name in builds:
            return {**builds[name], "reused": True}
        conn.execute(f"DROP INDEX IF EXISTS {name}")
        log(
            f"building {name} ({dim}-d, {storage}, maintenance_work_mem {settings.HNSW_BUILD_MEMORY}, "
            f"{settings.HNSW_BUILD_WORKERS} parallel workers) ..."
        )
        sampler = RssSampler()
        sampler.watch("postgres", postgres_pid(), True)
        sampler.start()
        load = os.getloadavg()
        t = time.perf_counter()
        create_indexes(model.pk, {column: dim})
        seconds = time.perf_counter() - t
        rss = sampler.stop()
    size = scalar(conn, "SELECT pg_relation_size(%s::regclass)", [name])
    info = {
        "index": name,
        "column": column,
        "dim": dim,
        "storage": storage,
        "build_s": round(seconds, 1),
        "size_mib": round(size / 2**20, 1),
        "maintenance_work_mem": settings.HNSW_BUILD_MEMORY,
        "parallel_workers": settings.HNSW_BUILD_WORKERS,
        "load_avg_at_start": [round(x, 2) for x in load],
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "peak_backend_rss_mib": max((r["peak_rss_mib"] for r in rss if r["process"] != "postmaster"), default=None),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    log(f"{name}: {seconds:.1f} s, {size / 2**20:.0f} MiB")
    builds[name] = info
    builds_file.write_text(json.dumps(builds, indent=1))
    return {**info, "reused": False}


def build_probe(
    model: EmbeddingModel, column: str, storage: str, memory: str, workers: str, rebuild: bool, builds_file: Path
) -> dict:
    """Time one build of the model's `column` index under these build settings, as a scratch
    index (same expression as the site's), then drop it; kept in `builds_file` like the
    indexes' builds."""
    from embeddings.vector_index import TABLE, index_expr

    builds = json.loads(builds_file.read_text()) if builds_file.exists() else {}
    key = f"probe:{column}:{storage}:{memory}:{workers}"
    if key in builds and not rebuild:
        return {**builds[key], "reused": True}

    conn = connect()
    dim = model.column_dims()[column]
    name = f"bench_build_probe_{column}"
    conn.execute(f"DROP INDEX IF EXISTS {name}")
    conn.execute(
        "SELECT set_config('maintenance_work_mem', %s, false), "
        "set_config('max_parallel_maintenance_workers', %s, false)",
        [memory, workers],
    )
    log(f"build probe: {column} {storage} maintenance_work_mem {memory}, {workers} parallel workers ...")
    load = os.getloadavg()
    t = time.perf_counter()
    conn.execute(
        f"CREATE INDEX {name} ON {TABLE} USING hnsw ({index_expr(column, dim, storage)}) "
        f"WITH (m = 16, ef_construction = 64) WHERE model_id = {int(model.pk)}"
    )
    seconds = time.perf_counter() - t
    size = scalar(conn, "SELECT pg_relation_size(%s::regclass)", [name])
    conn.execute(f"DROP INDEX {name}")
    conn.close()
    log(f"build probe: {seconds:.1f} s")
    builds[key] = {
        "column": column,
        "dim": dim,
        "storage": storage,
        "maintenance_work_mem": memory,
        "parallel_workers": int(workers),
        "build_s": round(seconds, 1),
        "size_mib": round(size / 2**20, 1),
        "load_avg_at_start": [round(x, 2) for x in load],
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    builds_file.write_text(json.dumps(builds, indent=1))
    return {**builds[key], "reused": False}


def measure_variant(
    model: EmbeddingModel,
    column: str,
    storage: str,
    vectors: list[np.ndarray],
    recall_queries: np.ndarray,
    exact: np.ndarray,
) -> dict:
    """Raw latency (c=1, the text queries' vectors) and recall@10 of vector_search under `storage`."""
    from django.conf import settings
    from django.test import override_settings

    from catalog.search import vector_search

    dim = model.column_dims()[column]
    conn = connect()
    with override_settings(HNSW_STORAGE=storage):
        times = [run_raw(conn, "text", column, dim, model.pk, v, "") for v in vectors[:5]]
        times = [run_raw(conn, "text", column, dim, model.pk, v, "") for v in vectors]
        got = [[pid for pid, _ in vector_search(model, column, q, K_RECALL)] for q in recall_queries]
        sql, params, _ = raw_query("text", column, dim, model.pk, vectors[0])
        plan = " ".join(r[0] for r in conn.execute("EXPLAIN " + sql, params).fetchall())
        rerank = settings.HNSW_BINARY_RERANK if storage == "binary" else None
    conn.close()
    r = [len(set(g) & set(e.tolist())) / K_RECALL for g, e in zip(got, exact)]
    return {
        "raw_ms": stats_ms(times),
        "recall@10": round(float(np.mean(r)), 4),
        "uses_index": "hnsw" in plan,
        "binary_rerank": rerank,
    }


# --- the searches --------------------------------------------------------------------------


def api_path(kind: str, query: str) -> str:
    """The GET /api/search call of `kind` (a photo is a POST instead)."""
    params: dict[str, str | int] = {"q": query, "k": PER_PAGE, "mode": "semantic"}
    if kind == "rare filter":
        params["category"] = RARE_CATEGORY
    elif kind == "hybrid":
        params["mode"] = "hybrid"
    elif kind == "price sort":
        params["sort"] = "price_asc"
    elif kind == "page 5":
        params["page"] = 5
    return "/api/search?" + urllib.parse.urlencode(params)


def call_api(port: int, kind: str, query: str, photo: tuple[str, bytes]) -> tuple[float, int]:
    from bench.search_latency import http_get, http_post_image

    t = time.perf_counter()
    if kind == "photo":
        status, body = http_post_image(port, photo[1], photo[0])
    else:
        status, body = http_get(port, api_path(kind, query))
    seconds = time.perf_counter() - t
    if status != 200:
        raise RuntimeError(f"{kind}: HTTP {status}: {body[:300]!r}")
    return seconds, len(json.loads(body)["results"])


def raw_query(kind: str, column: str, dim: int, model_id: int, vector: np.ndarray) -> tuple[str, list, int]:
    """The bare pgvector query that answers the same page (SQL, parameters, ef_search): the
    nearest rows through the same index (embeddings.vector_index.nearest_sql), with the
    filter, the price order or the offset written straight into it."""
    from django.conf import settings

    from embeddings.vector_index import TABLE, nearest_params, nearest_sql

    ef = settings.HNSW_EF_SEARCH
    where, where_params, limit = "", [], PER_PAGE
    if kind == "rare filter":
        where, where_params = " AND pv.category = %s", [RARE_CATEGORY]
    elif kind == "price sort":  # the relevance candidates (SEARCH_CANDIDATES deep), cheapest first
        limit = settings.SEARCH_CANDIDATES
    elif kind == "page 5":
        limit = PER_PAGE * 5
        ef = max(ef, limit)
    elif kind == DEEP:  # what search() reads for a one-list page: the whole candidate list
        limit = settings.SEARCH_CANDIDATES
        ef = max(ef, limit)  # as vector_search sets it
    sql = nearest_sql(column, dim, "pv.product_id", TABLE, where)
    params = nearest_params(vector, model_id, where_params, limit)
    if kind == "price sort":
        sql = (
            f"SELECT hits.product_id FROM ({sql}) AS hits JOIN catalog_product p ON p.id = hits.product_id "
            f"ORDER BY p.price LIMIT {PER_PAGE}"
        )
    elif kind == "page 5":
        sql += f" OFFSET {PER_PAGE * 4}"
    return sql, params, ef


KEYWORD_SQL = (
    "SELECT id FROM catalog_product WHERE search_doc @@ websearch_to_tsquery('english', %s) "
    "ORDER BY ts_rank_cd(search_doc, websearch_to_tsquery('english', %s)) DESC LIMIT 24"
)


def run_raw(
    conn: psycopg.Connection, kind: str, column: str, dim: int, model_id: int, vec: np.ndarray, text: str
) -> float:
    from django.conf import settings

    sql, params, ef = raw_query(kind, column, dim, model_id, vec)
    t = time.perf_counter()
    with conn.transaction():
        conn.execute(f"SET LOCAL hnsw.ef_search = {ef}")
        if kind == "rare filter":  # without it a 0.5% filter empties the page (section 3)
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = conn.execute(sql, params).fetchall()
        if kind == "hybrid":  # the words' full-text list too: a hybrid page reads both
            conn.execute(KEYWORD_SQL, [text, text]).fetchall()
    seconds = time.perf_counter() - t
    if len(rows) != (PER_PAGE if kind != DEEP else settings.SEARCH_CANDIDATES):
        raise RuntimeError(f"raw {kind}: {len(rows)} rows")
    return seconds


def concurrently(clients: int, jobs: list, fn: Callable[[int, Any], Any]) -> list:
    """Run fn(client_index, job) over jobs with `clients` threads; results in job order."""
    out: list = [None] * len(jobs)
    errors: list[BaseException] = []
    lock = threading.Lock()
    cursor = [0]

    def worker(i: int) -> None:
        while not errors:
            with lock:
                j = cursor[0]
                cursor[0] += 1
            if j >= len(jobs):
                return
            try:
                out[j] = fn(i, jobs[j])
            except BaseException as exc:  # re-raised in the caller: a failed search is no figure
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def exact_top(queries: np.ndarray, column: str, products: int, image_c: np.ndarray, text_c: np.ndarray) -> np.ndarray:
    """Exact top K_RECALL product ids per query (numpy over regenerated chunks)."""
    best_s = np.full((len(queries), K_RECALL), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), K_RECALL), dtype=np.int64)
    for start in range(0, products, CHUNK):
        n = min(CHUNK, products - start)
        _, image, text, _, _, _ = chunk_rows(start, n, image_c, text_c)
        x = image if column == "image_vec" else text
        s = queries @ x.T
        s_all = np.concatenate([best_s, s], axis=1)
        i_all = np.concatenate([best_i, np.arange(start + 1, start + n + 1)[None, :].repeat(len(queries), 0)], axis=1)
        top = np.argpartition(-s_all, K_RECALL, axis=1)[:, :K_RECALL]
        best_s = np.take_along_axis(s_all, top, 1)
        best_i = np.take_along_axis(i_all, top, 1)
    return best_i


def recall(model: EmbeddingModel, products: int, image_c: np.ndarray, text_c: np.ndarray, queries: int) -> dict:
    """recall@10 of catalog.search.vector_search (the site's query: shipped ef_search and
    storage) against exact search, queries drawn around the centres like the products: for 10
    rows (`ef_search` = HNSW_EF_SEARCH) and for the first 10 of the SEARCH_CANDIDATES rows that
    search() reads from each list (`ef_search` as deep), which is what a search's page holds."""
    from django.conf import settings

    from catalog.search import vector_search

    def overlap(found: list[list[int]], exact: np.ndarray) -> list[float]:
        return [len(set(g[:K_RECALL]) & set(e.tolist())) / K_RECALL for g, e in zip(found, exact)]

    out = {}
    for column, centres in (("text_vec", text_c), ("image_vec", image_c)):
        rng = np.random.default_rng([99, len(column)])
        q = around(centres, rng.integers(0, len(centres), queries), rng)
        exact = exact_top(q, column, products, image_c, text_c)
        got, deep, times = [], [], []
        for v in q:
            t = time.perf_counter()
            got.append([pid for pid, _ in vector_search(model, column, v, K_RECALL)])
            times.append(time.perf_counter() - t)
            deep.append([pid for pid, _ in vector_search(model, column, v, settings.SEARCH_CANDIDATES)])
        r, r_deep = overlap(got, exact), overlap(deep, exact)
        out[column] = {
            "recall@10": round(float(np.mean(r)), 4),
            "min": min(r),
            "recall@10_search_depth": round(float(np.mean(r_deep)), 4),
            "min_search_depth": min(r_deep),
            "queries": queries,
            "vector_search_ms": stats_ms(times),
        }
    return out


def query_vectors(model: EmbeddingModel, texts: list[str], jobs: dict) -> tuple[dict[str, dict], dict]:
    """The query vectors of every job (words and photos), and the encoder's time for them."""
    import io

    import torch
    from PIL import Image

    from catalog.search import image_query_vectors, text_query_vector
    from embeddings.registry import encoder_for
    from searchsite.supervisor import web_torch_threads

    torch.set_num_threads(int(web_torch_threads()))  # as many threads as a gunicorn worker's encoder
    encoder_for(model).encode_texts(texts[:4])
    vectors: dict[str, dict] = {"text": {}, "photo": {}}
    encode_text, encode_photo = [], []
    for q in sorted({q for kind in KINDS for q, _ in jobs[kind]}):
        t = time.perf_counter()
        vectors["text"][q] = text_query_vector(model, q)[1]
        encode_text.append(time.perf_counter() - t)
    for name, data in sorted({p for kind in KINDS for _, p in jobs[kind]}):
        t = time.perf_counter()
        vectors["photo"][name] = image_query_vectors(model, Image.open(io.BytesIO(data)).convert("RGB"))["image_vec"]
        encode_photo.append(time.perf_counter() - t)
    return vectors, {"text": stats_ms(encode_text), "photo": stats_ms(encode_photo)}


def measure_variants(
    model: EmbeddingModel,
    choices: list[tuple[str, str]],
    results: dict,
    products: int,
    recall_queries: int,
    image_c: np.ndarray,
    text_c: np.ndarray,
    vectors: dict[str, dict],
) -> list[dict]:
    log("index variants: raw latency and recall@10")
    rows_v = []
    for storage, column in choices:
        centres_c = text_c if column == "text_vec" else image_c
        rng_v = np.random.default_rng([99, len(column)])
        qv = around(centres_c, rng_v.integers(0, len(centres_c), recall_queries), rng_v)
        exact = exact_top(qv, column, products, image_c, text_c)
        vecs = list(vectors["text"].values()) if column == "text_vec" else list(vectors["photo"].values())
        m = measure_variant(model, column, storage, vecs, qv, exact)
        b = results.get("variant_builds", {}).get(f"{storage}:{column}") or results["index"]["columns"][column]
        rows_v.append(
            {
                "column": column,
                "storage": storage,
                "build_s": b["build_s"],
                "size_mib": b["size_mib"],
                "raw p50": m["raw_ms"]["p50"],
                "raw p99": m["raw_ms"]["p99"],
                "recall@10": m["recall@10"],
                "rerank": m["binary_rerank"] or "",
                "uses HNSW": m["uses_index"],
                "build load 1m": b["load_avg_at_start"][0],
            }
        )
    return rows_v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--data-dir", default="", help="default var/bench-100k, var/bench-1m, ...")
    parser.add_argument("--requests", type=int, default=100, help="API calls per kind at each concurrency")
    parser.add_argument("--clients", default="1,16")
    parser.add_argument("--recall-queries", type=int, default=200)
    parser.add_argument("--rebuild-index", action="store_true", help="build the HNSW indexes again (timed)")
    parser.add_argument(
        "--variants",
        default="",
        help="other index choices to build and measure beside the shipped one: storage:column,... "
        "(e.g. vector:text_vec,binary:text_vec)",
    )
    parser.add_argument(
        "--build-settings",
        default="",
        help="also time builds of one index under other maintenance_work_mem:parallel_workers "
        "(e.g. 64MB:1,1GB:0,1GB:1), in a scratch index dropped afterwards",
    )
    parser.add_argument("--build-column", default="image_vec", help="the column --build-settings builds")
    parser.add_argument("--build-storage", default="", help="the storage --build-settings builds (default: shipped)")
    parser.add_argument(
        "--variants-only",
        action="store_true",
        help="measure only --variants (no API run): bench/results/catalogue_scale_<n>_variants.json",
    )
    parser.add_argument("--stop-after", choices=("load", "index"), help="only load the rows (and build the indexes)")
    parser.add_argument("--encode-centres", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.encode_centres:
        encode_centres(Path(args.encode_centres))
        return
    started = time.time()
    data_dir = Path(args.data_dir or default_data_dir(args.products)).resolve()
    os.environ["VITRINE_DATA_DIR"] = str(data_dir)
    bench_env()
    from bench.common import setup_django

    setup_django()
    from django.conf import settings

    from bench.load_test import CACHES_OFF, postgres_pid, start_web
    from bench.search_latency import free_port
    from embeddings.models import EmbeddingModel
    from searchsite.supervisor import WEB_WORKERS

    image_c, text_c, centres = load_centres(data_dir)
    model = EmbeddingModel.active()
    assert model is not None
    log(f"model {model.name}: {model.column_dims()}")
    results: dict = {
        "products": args.products,
        "model": model.name,
        "backbone": model.backbone,
        "dims": model.column_dims(),
        "ef_search": settings.HNSW_EF_SEARCH,
        "per_page": PER_PAGE,
        "rare_category_share": RARE_FRACTION,
        "web_workers": WEB_WORKERS,
    }
    results["load"] = load_catalogue(args.products, model.pk, image_c, text_c, centres)
    log(f"load: {results['load']}")
    if args.stop_after == "load":
        return
    from embeddings.vector_index import index_storage

    builds_file = data_dir / "index_builds.json"
    results["index"] = {
        "storage": index_storage(),
        "columns": {
            c: build_index(model, c, index_storage(), args.rebuild_index, builds_file) for c in model.column_dims()
        },
    }
    with connect() as conn:
        results["heap_and_toast_mib"] = round(
            scalar(conn, "SELECT pg_table_size('embeddings_productvector')") / 2**20, 1
        )
    variants = [tuple(v.split(":")) for v in args.variants.split(",") if v]
    for storage, column in variants:
        results.setdefault("variant_builds", {})[f"{storage}:{column}"] = build_index(
            model, column, storage, args.rebuild_index, builds_file
        )
    if args.build_settings:
        probes = [spec.split(":") for spec in args.build_settings.split(",")]  # memory:workers
        results["build_settings"] = [
            build_probe(
                model,
                args.build_column,
                args.build_storage or index_storage(),
                memory,
                workers,
                args.rebuild_index,
                builds_file,
            )
            for memory, workers in probes
        ]
    if args.stop_after == "index":
        return
    # Queries: the demo's wordings, and demo photos (centres' photos: what a shopper would upload).
    lines = [json.loads(line) for line in (ROOT / "demo/eval/queries.jsonl").read_text().splitlines() if line.strip()]
    texts = [d["query"] for d in lines if isinstance(d.get("query"), str)]
    rng = random.Random(5)
    photos = [(Path(c["image"]).name, (DEMO_CSV.parent / c["image"]).read_bytes()) for c in rng.sample(centres, 50)]
    jobs = {
        kind: [(texts[(i * 7 + j) % len(texts)], photos[(i * 3 + j) % len(photos)]) for i in range(args.requests)]
        for j, kind in enumerate(KINDS)
    }

    label = default_data_dir(args.products).name.replace("bench-", "")
    if args.variants_only:  # the index choices alone, beside the shipped indexes' recall
        vectors, results["encode_ms"] = query_vectors(model, texts, jobs)
        results["variants"] = measure_variants(
            model, variants, results, args.products, args.recall_queries, image_c, text_c, vectors
        )
        table(results["variants"], title="Index choices: build, size, raw query (c=1) and recall@10")
        write_result(f"catalogue_scale_{label}_variants", results, started)
        return

    port = free_port()
    log(f"gunicorn ({WEB_WORKERS} workers, runsite's command) on :{port}")
    sampler = RssSampler()
    sampler.watch("this client", os.getpid(), False)
    sampler.watch("postgres", postgres_pid(), True)
    sampler.start()
    # The search path itself next to the raw query: no cache answers (the wordings repeat, and
    # the shared level would answer nearly all of them); section 8 measures the caches.
    web = start_web(port, WEB_WORKERS, CACHES_OFF)
    sampler.watch("gunicorn", web.pid, True)
    api: dict = {}
    concurrency = [int(c) for c in args.clients.split(",")]
    all_jobs = [(kind, job) for kind in KINDS for job in jobs[kind]]
    try:
        for kind in KINDS:  # warm: every worker has run each path once
            for job in jobs[kind][:4]:
                call_api(port, kind, *job)
        for clients in concurrency:
            # The kinds interleaved, so the shared machine's bursts fall on all of them alike.
            mixed = random.Random(clients).sample(all_jobs, len(all_jobs))
            load = os.getloadavg()
            t = time.perf_counter()
            got = concurrently(clients, mixed, lambda _i, kj: (kj[0], *call_api(port, kj[0], *kj[1])))
            wall = time.perf_counter() - t
            for kind in KINDS:
                mine = [g for g in got if g[0] == kind]
                api[(kind, clients)] = {
                    "latency": stats_ms([g[1] for g in mine]),
                    "requests": len(mine),
                    "full_pages": sum(g[2] == PER_PAGE for g in mine),
                    "mix_per_s": round(len(got) / wall, 1),
                    "load_avg_1m": round(load[0], 2),
                }
                log(
                    f"API {kind} c={clients}: {api[(kind, clients)]['latency']['p50']} / "
                    f"{api[(kind, clients)]['latency']['p99']} ms, full pages {api[(kind, clients)]['full_pages']}/{len(mine)}"
                )
    finally:
        web.terminate()
        web.wait(30)

    # In this process now (gunicorn is gone, so it competes with nothing): the query vectors,
    # the encoder's own time (never a cache's), then the raw queries with those vectors.
    settings.SEARCH_SHARED_CACHE = False
    settings.SEARCH_QUERY_VECTOR_CACHE_SIZE = 0
    vectors, results["encode_ms"] = query_vectors(model, texts, jobs)

    dims = model.column_dims()
    raw: dict = {}
    conns = [connect() for _ in range(max(int(c) for c in args.clients.split(",")))]
    try:

        def one(i: int, kj: tuple[str, Any]) -> tuple[str, float]:
            kind, (q, (name, _)) = kj
            column = "image_vec" if kind == "photo" else "text_vec"
            vec = vectors["photo"][name] if kind == "photo" else vectors["text"][q]
            return kind, run_raw(conns[i], kind, column, dims[column], model.pk, vec, q)

        raw_jobs = all_jobs + [(DEEP, job) for job in jobs["text"]]
        concurrently(min(2, len(conns)), raw_jobs[:: len(raw_jobs) // 12], one)  # warm
        for clients in concurrency:
            mixed = random.Random(clients).sample(raw_jobs, len(raw_jobs))
            load = os.getloadavg()
            t = time.perf_counter()
            got = concurrently(clients, mixed, one)
            wall = time.perf_counter() - t
            for kind in (*KINDS, DEEP):
                raw[(kind, clients)] = {
                    "latency": stats_ms([g[1] for g in got if g[0] == kind]),
                    "mix_per_s": round(len(got) / wall, 1),
                    "load_avg_1m": round(load[0], 2),
                }
    finally:
        for c in conns:
            c.close()
    results["peak_rss"] = sampler.stop()

    log("recall@10 against exact search")
    results["recall"] = recall(model, args.products, image_c, text_c, args.recall_queries)
    if variants:
        results["variants"] = measure_variants(
            model,
            [(results["index"]["storage"], c) for c in dims] + variants,
            results,
            args.products,
            args.recall_queries,
            image_c,
            text_c,
            vectors,
        )

    rows = []
    for (kind, clients), a in api.items():
        r = raw[(kind, clients)]
        enc = results["encode_ms"]["photo" if kind == "photo" else "text"]["p50"]
        rows.append(
            {
                "search": kind,
                "c": clients,
                "API p50": a["latency"]["p50"],
                "API p99": a["latency"]["p99"],
                "raw p50": r["latency"]["p50"],
                "raw p99": r["latency"]["p99"],
                "raw 200 deep p50": raw[(DEEP, clients)]["latency"]["p50"] if kind == "text" else "",
                "encode p50": enc,
                "API - raw - encode (p50)": round(a["latency"]["p50"] - r["latency"]["p50"] - enc, 1),
                "mix/s (API, raw)": f"{a['mix_per_s']:.0f}, {r['mix_per_s']:.0f}",
                "full pages": f"{a['full_pages']}/{a['requests']}",
                "load 1m": a["load_avg_1m"],
            }
        )
    results["rows"] = rows
    table(
        rows,
        title=f"{args.products:,} products, {model.name} {dims}, ef_search {settings.HNSW_EF_SEARCH}, "
        f"index {results['index']['storage']}; latency in ms",
    )
    table(
        [
            {k: v for k, v in i.items() if k not in ("load_avg_at_end", "built_at")}
            for i in [*results["index"]["columns"].values(), *results.get("variant_builds", {}).values()]
        ],
        title="HNSW indexes",
    )
    if variants:
        table(results["variants"], title="Index choices: build, size, raw query (c=1) and recall@10")
    if args.build_settings:
        table(results["build_settings"], title="HNSW build settings")
    table(
        [
            {
                "column": c,
                "recall@10": r["recall@10"],
                "min": r["min"],
                "p50 ms": r["vector_search_ms"]["p50"],
                f"recall@10 of {settings.SEARCH_CANDIDATES} (search's depth)": r["recall@10_search_depth"],
                "min of those": r["min_search_depth"],
            }
            for c, r in results["recall"].items()
        ],
        title=f"recall@10 at ef_search {settings.HNSW_EF_SEARCH}",
    )
    table(results["peak_rss"], title="peak RSS")
    text1 = next(r for r in rows if r["search"] == "text" and r["c"] == 1)
    results["targets"] = {
        "text_p50_within_raw_encode_10ms": text1["API - raw - encode (p50)"] <= 10,
        "text_p99_c1_le_50ms": text1["API p99"] <= TARGET_P99_MS,
        "p99_c1_le_50ms_by_kind": {r["search"]: r["API p99"] <= TARGET_P99_MS for r in rows if r["c"] == 1},
        "recall_ge_0.95": {c: r["recall@10"] >= TARGET_RECALL for c, r in results["recall"].items()},
        "recall_ge_0.95_search_depth": {
            c: r["recall@10_search_depth"] >= TARGET_RECALL for c, r in results["recall"].items()
        },
        "rare_filter_pages_full": all(
            r["full pages"].split("/")[0] == r["full pages"].split("/")[1] for r in rows if r["search"] == "rare filter"
        ),
    }
    print(json.dumps(results["targets"], indent=1))
    write_result(f"catalogue_scale_{label}", results, started)


if __name__ == "__main__":
    main()
