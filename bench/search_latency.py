"""Search API latency over real HTTP (gunicorn) vs the raw pgvector query alone, in one run.

Starts gunicorn (1 sync worker, as the site's runsite would per core) on the benchmark
data dir with the demo catalogue embedded by the default model, warms it, then times:

* HTTP GET /api/search?q=... and POST /api/search/image (demo photos), end to end;
* in this process, the stages of the same path: encode the query, the SQL of
  catalog.search.vector_search, loading the products (ORM) and serialising the JSON;
* the raw pgvector query alone: same vectors, same k, same index, psycopg directly.

    .venv/bin/python -m bench.search_latency [--text-queries 200] [--image-queries 100]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.common import ROOT, bench_env, log, post_search_image, setup_django, stats_ms, table, write_result

if TYPE_CHECKING:  # Django is set up in main(), before the models are imported
    from embeddings.models import EmbeddingModel

K = 24


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def http_post_image(port: int, data: bytes, filename: str) -> tuple[int, bytes]:
    status, out, _ = post_search_image(port, data, filename, K)
    return status, out


def start_gunicorn(port: int) -> subprocess.Popen:
    log_path = Path(bench_env()["VITRINE_DATA_DIR"]) / "gunicorn-bench.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "searchsite.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--timeout",
            "120",
        ],
        cwd=ROOT,
        env=bench_env(),
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            status, _ = http_get(port, "/api/search?q=warm&k=1")  # first request loads the encoder
            if status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"gunicorn did not answer; see {log_path}")


def raw_pgvector(vectors: list[np.ndarray], column: str, dim: int, model_id: int, ef: int) -> list[float]:
    """The bare nearest-neighbour query with psycopg: same index expression, k and ef_search."""
    import psycopg
    from django.db import connection
    from pgvector.psycopg import register_vector

    from embeddings.vector_index import indexed_expr, query_param  # after setup_django, as the rest

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    times = []
    with psycopg.connect(**params, autocommit=True) as conn:
        register_vector(conn)
        # The site's unfiltered search walks the index whatever the catalogue's size
        # (catalog.search.INDEX_ONLY); so does the raw query.
        conn.execute(f"SET hnsw.ef_search = {ef}; SET enable_seqscan = off; SET enable_sort = off")
        sql = (
            f"SELECT product_id, {indexed_expr(column, dim)} <=> {query_param(dim)} AS d "
            f"FROM embeddings_productvector WHERE model_id = %s ORDER BY d LIMIT {K}"
        )
        conn.execute(sql, [vectors[0], model_id]).fetchall()
        plan = " ".join(r[0] for r in conn.execute("EXPLAIN " + sql, [vectors[0], model_id]).fetchall())
        if "hnsw" not in plan:
            log(f"WARNING: raw query does not use the HNSW index: {plan[:200]}")
        for v in vectors:
            t = time.perf_counter()
            conn.execute(sql, [v, model_id]).fetchall()
            times.append(time.perf_counter() - t)
    return times


def stages(kind: str, inputs: list, model: EmbeddingModel) -> dict[str, Any]:
    """Time each stage of the search path in this process (same code the view runs)."""
    from django.http import JsonResponse
    from django.test import RequestFactory

    from catalog.query_image import read_query_image
    from catalog.search import active_model, image_query_vectors, load_hits, text_query_vector, vector_search
    from catalog.serializers import hit_json
    from django.core.files.uploadedfile import SimpleUploadedFile

    request = RequestFactory().get("/api/search", HTTP_HOST="127.0.0.1")
    out: dict[str, Any] = {
        "model lookup": [],
        "decode upload": [],
        "encode query": [],
        "SQL (vector_search)": [],
        "load products (ORM)": [],
        "serialise JSON": [],
        "total": [],
    }
    vectors = []
    for item in inputs:
        t0 = time.perf_counter()
        m = active_model()
        t1 = time.perf_counter()
        if kind == "text":
            t2 = t1
            column, vec = text_query_vector(m, item)
        else:
            image = read_query_image(SimpleUploadedFile(item[0], item[1]))
            t2 = time.perf_counter()
            column, vec = "image_vec", image_query_vectors(m, image)["image_vec"]
        t3 = time.perf_counter()
        scored = vector_search(m, column, vec, K)
        t4 = time.perf_counter()
        hits = load_hits(scored)
        t5 = time.perf_counter()
        JsonResponse({"results": [hit_json(request, h) for h in hits]}).content
        t6 = time.perf_counter()
        for key, a, b in (
            ("model lookup", t0, t1),
            ("decode upload", t1, t2),
            ("encode query", t2, t3),
            ("SQL (vector_search)", t3, t4),
            ("load products (ORM)", t4, t5),
            ("serialise JSON", t5, t6),
            ("total", t0, t6),
        ):
            out[key].append(b - a)
        vectors.append((column, vec))
    out["_vectors"] = vectors
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--text-queries", type=int, default=200)
    parser.add_argument("--image-queries", type=int, default=100)
    args = parser.parse_args()
    started = time.time()
    bench_env()
    setup_django()
    from django.conf import settings

    from bench.demo_catalogue import run_setup_subprocess
    from catalog.models import Product
    from embeddings.registry import encoder_for

    model = run_setup_subprocess(embed=True)
    log(f"model {model.name} ({model.backbone}), {model.vector_count()} vectors")

    lines = [json.loads(line) for line in (ROOT / "demo/eval/queries.jsonl").read_text().splitlines() if line.strip()]
    queries = [d["query"] for d in lines if isinstance(d.get("query"), str)]
    texts = [queries[i % len(queries)] for i in range(args.text_queries)]
    products = list(Product.objects.order_by("?")[: args.image_queries])
    images = [(Path(p.image.path).name, Path(p.image.path).read_bytes()) for p in products]

    port = free_port()
    log(f"starting gunicorn on :{port}")
    web = start_gunicorn(port)
    try:
        for q in texts[:10]:  # warm-up
            http_get(port, f"/api/search?q={urllib.parse.quote(q)}&k={K}")
        for name, data in images[:5]:
            http_post_image(port, data, name)
        http_text, http_image = [], []
        for q in texts:
            t = time.perf_counter()
            status, _ = http_get(port, f"/api/search?q={urllib.parse.quote(q)}&k={K}")
            http_text.append(time.perf_counter() - t)
            assert status == 200, status
        for name, data in images:
            t = time.perf_counter()
            status, body = http_post_image(port, data, name)
            http_image.append(time.perf_counter() - t)
            assert status == 200, (status, body[:200])
    finally:
        web.terminate()
        web.wait(15)

    log("in-process stage breakdown")
    encoder_for(model).encode_texts(texts[:4])  # load + warm the encoder here too
    encoder_for(model).encode_images([])
    st_text = stages("text", texts, model)
    st_image = stages("image", images, model)

    log("raw pgvector queries (same vectors, same k)")
    text_col, text_dim = (
        st_text["_vectors"][0][0],
        (model.image_dim if st_text["_vectors"][0][0] == "image_vec" else model.text_dim),
    )
    raw_text = raw_pgvector([v for _, v in st_text["_vectors"]], text_col, text_dim, model.pk, settings.HNSW_EF_SEARCH)
    raw_image = raw_pgvector(
        [v for _, v in st_image["_vectors"]], "image_vec", model.image_dim, model.pk, settings.HNSW_EF_SEARCH
    )

    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {
        "k": K,
        "model": model.name,
        "backbone": model.backbone,
        "vectors": model.vector_count(),
        "ef_search": settings.HNSW_EF_SEARCH,
        "gunicorn_workers": 1,
    }
    for kind, http_t, st, raw in (("text", http_text, st_text, raw_text), ("image", http_image, st_image, raw_image)):
        h, r = stats_ms(http_t), stats_ms(raw)
        results[kind] = {
            "http": h,
            "raw_pgvector": r,
            "stages": {k: stats_ms(v) for k, v in st.items() if not k.startswith("_")},
            "ratio_http_p50_over_raw_p50": round(h["p50"] / r["p50"], 1),
            "ratio_http_p99_over_raw_p99": round(h["p99"] / r["p99"], 1),
        }
        rows.append({"query": kind, "path": "HTTP API (gunicorn)", "n": h["n"], "p50_ms": h["p50"], "p99_ms": h["p99"]})
        for name, s in results[kind]["stages"].items():
            if name in ("decode upload",) and kind == "text":
                continue
            rows.append(
                {"query": kind, "path": f"  in-process: {name}", "n": s["n"], "p50_ms": s["p50"], "p99_ms": s["p99"]}
            )
        rows.append(
            {"query": kind, "path": "raw pgvector (psycopg)", "n": r["n"], "p50_ms": r["p50"], "p99_ms": r["p99"]}
        )
        rows.append(
            {
                "query": kind,
                "path": "ratio HTTP / raw (p50, p99)",
                "n": "",
                "p50_ms": results[kind]["ratio_http_p50_over_raw_p50"],
                "p99_ms": results[kind]["ratio_http_p99_over_raw_p99"],
            }
        )
    table(rows, title=f"Search latency, k={K}, {model.vector_count()} products, model {model.name} ({model.backbone})")
    write_result("search_latency", results, started)


if __name__ == "__main__":
    main()
