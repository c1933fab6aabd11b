"""A bounded loopback load test: 16 clients searching against the site's gunicorn, with the
search caches on and off, for a shop-like query mix and for one where no query repeats.

Starts gunicorn with runsite's command (searchsite.supervisor.gunicorn_argv: 2 sync workers)
on the benchmark data dir, with the demo catalogue (2,500 products) embedded by the default
model; an already-embedded data dir is reused. Then, for each query mix (--mixes) and cache
setting (--caches), a fresh gunicorn and `--clients` threads that each send searches back to
back for `--seconds`, in this mix of kinds (MIX):

* ``text``: GET /api/search?q=..., mode semantic or hybrid. Mix ``zipf``: 70 % of the
  wordings are the demo/eval/queries.jsonl ones drawn with Zipf-like popularity (the wording
  of rank r with weight 1/r: a few head queries make up much of a shop's traffic), 30 % are
  the long tail, each sent once (TAIL_SHARE). Mix ``distinct``: no wording is ever sent twice;
* ``photo``: POST /api/search/image with a demo photo (multipart), one pixel changed per
  upload so no two uploads are the same photo (shoppers' own photos rarely repeat);
* ``filtered``: a text search with a category (70 %) and/or a price range (60 %), drawn
  independently (12 % draw neither);
* ``paged``: page 2..5 of a text search, or of the client's last photo search (img=<key>).

Each run starts with cold caches: a fresh gunicorn, and the caches' shared level in Redis
(catalog/search_cache.py, with REDIS_URL) emptied. Every answer that is not a 200 is an error. The per-client rate limits stay on, set by the
environment to a budget loopback load cannot reach (--rate-limit), so their cost is measured
too. Prints per-kind p50/p99, throughput and errors, the share of searches each cache answered
(the X-Search-Cache header), and the CPU each process group used.

    .venv/bin/python -m bench.load_test [--clients 16] [--seconds 60] [--mixes zipf,distinct] [--caches on,off]
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import itertools
import json
import os
import random
import subprocess
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import DEMO_CSV, ROOT, bench_env, log, post_search_image, stats_ms, table, write_result
from bench.search_latency import K, free_port
from searchsite.supervisor import WEB_WORKERS, gunicorn_argv

# Share of each kind of search; the rest of a kind's parameters are drawn in `next_request`.
# Words dominate shop search; a photo upload (the camera button) is a small share of it.
MIX = {"text": 0.5, "photo": 0.05, "filtered": 0.25, "paged": 0.2}
MODES = ("semantic", "hybrid")
ZIPF_EXPONENT = 1.0  # weight of the wording of popularity rank r: 1 / r ** ZIPF_EXPONENT
# Mix "zipf": this share of the wordings is the long tail, each sent once (shop logs: about a
# third of searches are one-offs); the rest are drawn by popularity from the demo's wordings.
TAIL_SHARE = 0.3
MIXES = ("zipf", "distinct")
# The search caches of catalog/search_cache.py, off: every search encodes and queries.
CACHES_OFF = {"SEARCH_QUERY_VECTOR_CACHE_SIZE": "0", "SEARCH_RESULT_CACHE_SIZE": "0", "SEARCH_SHARED_CACHE": "false"}
# High enough that 16 loopback clients (one address) never reach it; the limiter still runs.
LOAD_RATE_LIMIT = "1000000/m"


@dataclass
class Workload:
    queries: list[str]
    photos: list[tuple[str, bytes]]
    categories: list[str]
    mix: str = "zipf"
    weights: list[float] = field(default_factory=list)  # Zipf weight of each of `queries`
    words: list[str] = field(default_factory=list)  # to make distinct wordings
    counter: itertools.count = field(default_factory=itertools.count)  # shared by the clients


@dataclass
class Client:
    rng: random.Random
    photo_key: str = ""  # image_id of this client's last photo search, for paging it
    samples: list[tuple[str, float, float, str, str]] = field(default_factory=list)  # kind, end, s, status, cache


def load_workload(photo_count: int, mix: str) -> Workload:
    lines = [json.loads(line) for line in (ROOT / "demo/eval/queries.jsonl").read_text().splitlines() if line.strip()]
    queries = list(dict.fromkeys(d["query"] for d in lines if isinstance(d.get("query"), str)))
    random.Random(3).shuffle(queries)  # popularity rank: not the file's order
    with open(DEMO_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    photos = [
        (Path(r["image"]).name, (DEMO_CSV.parent / r["image"]).read_bytes())
        for r in random.Random(7).sample(rows, photo_count)
    ]
    words = sorted({w for q in queries for w in q.lower().split() if w.isalpha() and len(w) > 2})
    return Workload(
        queries,
        photos,
        sorted({r["category"] for r in rows}),
        mix,
        [1.0 / (r + 1) ** ZIPF_EXPONENT for r in range(len(queries))],
        words,
    )


def pick_query(w: Workload, rng: random.Random) -> str:
    if w.mix == "distinct" or rng.random() < TAIL_SHARE:
        # the n-th such search of the run: wording n mod Q plus a word or two, never repeated
        n = next(w.counter)
        base, extra = divmod(n, len(w.queries))
        return f"{w.queries[extra]} {w.words[base % len(w.words)]}" + (
            f" {base // len(w.words)}" if base >= len(w.words) else ""
        )
    return rng.choices(w.queries, weights=w.weights)[0]


def distinct_photo(w: Workload, rng: random.Random) -> tuple[str, bytes]:
    """A demo photo with one pixel set from a run-wide counter: never the same upload twice."""
    from PIL import Image

    name, data = rng.choice(w.photos)
    image = Image.open(io.BytesIO(data)).convert("RGB")
    n = next(w.counter)
    image.putpixel((n % image.width, (n // image.width) % image.height), (n % 251, (n // 251) % 251, 7))
    out = io.BytesIO()
    image.save(out, "PNG")
    return name, out.getvalue()


def next_request(w: Workload, c: Client) -> tuple[str, str, tuple[str, bytes] | None]:
    """(kind, GET path, photo to POST instead) of a client's next search."""
    rng = c.rng
    kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    params: dict[str, str | int] = {"k": K, "mode": rng.choice(MODES)}
    if kind == "photo":
        return kind, "", distinct_photo(w, rng)
    if kind == "paged" and c.photo_key and rng.random() < 0.5:
        params.update(img=c.photo_key, page=rng.randint(2, 5))
    else:
        params["q"] = pick_query(w, rng)
    if kind == "filtered":
        if rng.random() < 0.7:
            params["category"] = rng.choice(w.categories)
        if rng.random() < 0.6:
            low = rng.choice((0, 20, 50, 100))
            params.update(min_price=low, max_price=low + rng.choice((30, 80, 150)))
    elif kind == "paged":
        params["page"] = rng.randint(2, 5)
    return kind, "/api/search?" + urllib.parse.urlencode(params), None


def http_get(port: int, path: str) -> tuple[int, bytes, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body, resp.getheader("X-Search-Cache") or ""


def http_post_image(port: int, data: bytes, filename: str) -> tuple[int, bytes, str]:
    status, out, headers = post_search_image(port, data, filename, K)
    return status, out, headers.get("X-Search-Cache") or ""


def client_loop(port: int, w: Workload, c: Client, deadline: float) -> None:
    while time.perf_counter() < deadline:
        kind, path, photo = next_request(w, c)
        started = time.perf_counter()
        cache = ""
        try:
            if photo:
                status, body, cache = http_post_image(port, photo[1], photo[0])
            else:
                status, body, cache = http_get(port, path)
            outcome = str(status)
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, cut short, a 60 s timeout
            outcome, body = type(exc).__name__, b""
        ended = time.perf_counter()
        c.samples.append((kind, ended, ended - started, outcome, cache))
        if photo and outcome == "200":
            c.photo_key = json.loads(body)["query"]["image_id"]
        elif outcome != "200":
            log(f"error {outcome} on {kind} {photo[0] if photo else path}: {body[:200]!r}")


def cpu_seconds(groups: dict[str, tuple[int, bool]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named process: (pid, with its children,
    live and exited). The groups must not overlap: this process is counted without its children."""
    import psutil

    out = {}
    for name, (pid, children) in groups.items():
        total = 0.0
        try:
            root = psutil.Process(pid)
            for p in [root, *(root.children(recursive=True) if children else [])]:
                t = p.cpu_times()
                total += t.user + t.system + ((t.children_user + t.children_system) if children else 0.0)
        except psutil.NoSuchProcess:
            pass
        out[name] = total
    return out


def postgres_pid() -> int:
    """The embedded Postgres server's postmaster (its backends are its children)."""
    from django.conf import settings

    return int((Path(settings.DATA_DIR) / "pg" / "postmaster.pid").read_text().split()[0])


def start_web(port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    data = Path(bench_env()["VITRINE_DATA_DIR"])
    (data / "logs").mkdir(parents=True, exist_ok=True)
    argv = gunicorn_argv(f"127.0.0.1:{port}", workers, data / "logs" / "access.log")
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**bench_env(), **env},
        stdout=open(data / "logs" / "web.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if http_get(port, "/api/search?q=warm&k=1")[0] == 200:
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"gunicorn did not answer; see {data / 'logs' / 'web.log'}")


def run(port: int, w: Workload, clients: int, seconds: float, seed: int) -> tuple[list[Client], float, list[float]]:
    crowd = [Client(random.Random(seed + i)) for i in range(clients)]
    load: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    threads = [threading.Thread(target=client_loop, args=(port, w, c, deadline)) for c in crowd]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        load.append(os.getloadavg()[0])
        time.sleep(5)
    for t in threads:
        t.join()
    return crowd, time.perf_counter() - started, load


def cache_share(samples: list, name: str) -> float | None:
    """Of the answered searches that asked cache `name`, the share it answered."""
    asked = [s[4] for s in samples if s[3] == "200" and f"{name}=" in s[4]]
    return round(sum(f"{name}=hit" in c for c in asked) / len(asked), 3) if asked else None


def summarise(crowd: list[Client], elapsed: float) -> tuple[list[dict], dict]:
    samples = [s for c in crowd for s in c.samples]
    rows = []
    for kind in [*MIX, "all"]:
        mine = [s for s in samples if kind in ("all", s[0])]
        ok = [s[2] for s in mine if s[3] == "200"]
        errors = Counter(s[3] for s in mine if s[3] != "200")
        st = stats_ms(ok) if ok else {"p50": None, "p90": None, "p99": None, "mean": None}
        answered = sum(1 for s in mine if s[3] == "200")
        rows.append(
            {
                "kind": kind,
                "requests": len(mine),
                "errors": sum(errors.values()),
                "per_s": round(len(ok) / elapsed, 1),
                "p50_ms": st["p50"],
                "p90_ms": st["p90"],
                "p99_ms": st["p99"],
                "max_ms": round(max(ok) * 1000, 1) if ok else None,
                "page_hits": round(sum("result_pages=hit" in s[4] for s in mine if s[3] == "200") / answered, 3)
                if answered
                else None,
                "errors_by_status": dict(errors),
            }
        )
    caches = {name: cache_share(samples, name) for name in ("result_pages", "text_vectors", "photo_vectors")}
    return rows, {**rows[-1], "cache_hit_rates": caches}


def one_run(args: argparse.Namespace, mix: str, caches: str, workers: int) -> dict:
    w = load_workload(args.photos, mix)
    port = free_port()
    log(f"mix {mix}, caches {caches}: gunicorn ({workers} workers) on :{port}")
    from catalog.search_cache import clear_shared

    log(f"shared search cache (Redis): {clear_shared()} entries deleted: every run starts cold")
    web = start_web(port, workers, CACHES_OFF if caches == "off" else {})
    try:
        for q in w.queries[-8:]:  # every worker has run both towers and the SQL once (least popular wordings)
            http_get(port, "/api/search?" + urllib.parse.urlencode({"q": q, "mode": "hybrid"}))
        for name, data in w.photos[:4]:
            http_post_image(port, data, name)
        groups = {
            "gunicorn": (web.pid, True),
            "postgres": (postgres_pid(), True),
            "clients (this process)": (os.getpid(), False),
        }
        cpu_before = cpu_seconds(groups)
        log(f"{args.clients} clients for {args.seconds:.0f} s")
        crowd, elapsed, load = run(port, w, args.clients, args.seconds, args.seed)
        cpu_after = cpu_seconds(groups)
    finally:
        web.terminate()
        web.wait(30)
    rows, overall = summarise(crowd, elapsed)
    cpu = {k: round(cpu_after[k] - cpu_before[k], 1) for k in groups}
    cores = os.cpu_count() or 1
    answered = sum(r["requests"] - r["errors"] for r in rows[-1:])
    cpu_rows = [
        {
            "process": k,
            "cpu_s": v,
            "share_of_all_cores": round(v / (elapsed * cores), 2),
            "ms_per_search": round(1000 * v / max(1, answered), 1),
        }
        for k, v in cpu.items()
    ]
    load_1m = {"min": min(load), "max": max(load), "mean": round(sum(load) / len(load), 2)}
    table(
        rows,
        ["kind", "requests", "errors", "per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "page_hits"],
        title=f"mix {mix}, caches {caches}: {args.clients} clients, {elapsed:.0f} s, {workers} gunicorn workers",
    )
    table(cpu_rows, title=f"CPU during the run ({cores} cores x {elapsed:.0f} s = {cores * elapsed:.0f} core-s)")
    print(
        f"\nmix {mix}, caches {caches}: {overall['per_s']} searches/s, errors {overall['errors']} "
        f"{overall['errors_by_status']}; cache hit rates {overall['cache_hit_rates']}; "
        f"1-min load average during the run {load_1m}"
    )
    return {
        "mix": mix,
        "caches": caches,
        "seconds": round(elapsed, 1),
        "throughput_per_s": overall["per_s"],
        "errors": overall["errors"],
        "cache_hit_rates": overall["cache_hit_rates"],
        "rows": rows,
        "cpu_s": cpu,
        "load_avg_1m_during_run": load_1m,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60, help="of each run")
    parser.add_argument("--mixes", default=",".join(MIXES), help="query mixes, one run each: zipf, distinct")
    parser.add_argument("--caches", default="on,off", help="search caches in each mix's runs: on, off")
    parser.add_argument("--web-workers", type=int, default=None, help="default: runsite's (WEB_WORKERS)")
    parser.add_argument("--photos", type=int, default=100, help="demo photos the uploads are made from")
    parser.add_argument(
        "--rate-limit",
        default=LOAD_RATE_LIMIT,
        help="SEARCH_RATE_LIMIT and PHOTO_SEARCH_RATE_LIMIT for this run ('' = off)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    os.environ["SEARCH_RATE_LIMIT"] = os.environ["PHOTO_SEARCH_RATE_LIMIT"] = args.rate_limit
    started = time.time()
    bench_env()
    from bench.common import setup_django

    setup_django()
    from bench.demo_catalogue import run_setup_subprocess

    workers = args.web_workers or WEB_WORKERS
    model = run_setup_subprocess(embed=True)
    log(f"model {model.name} ({model.backbone}), {model.vector_count()} vectors")
    runs = [one_run(args, mix, caches, workers) for mix in args.mixes.split(",") for caches in args.caches.split(",")]
    summary = [
        {
            "mix": r["mix"],
            "caches": r["caches"],
            "searches_per_s": r["throughput_per_s"],
            "errors": r["errors"],
            "p50_ms": r["rows"][-1]["p50_ms"],
            "p99_ms": r["rows"][-1]["p99_ms"],
            **{f"{k}_hits": v for k, v in r["cache_hit_rates"].items()},
            "load_1m_mean": r["load_avg_1m_during_run"]["mean"],
        }
        for r in runs
    ]
    table(summary, title=f"{args.clients} clients, {model.vector_count()} products: searches/s by query mix and caches")
    write_result(
        "load_test",
        {
            "clients": args.clients,
            "seconds_per_run": args.seconds,
            "web_workers": workers,
            "k": K,
            "mix": MIX,
            "zipf_exponent": ZIPF_EXPONENT,
            "rate_limit": args.rate_limit,
            "model": model.name,
            "backbone": model.backbone,
            "products": model.vector_count(),
            "summary": summary,
            "runs": runs,
        },
        started,
    )
    errors = sum(r["errors"] for r in runs)
    if errors:
        raise SystemExit(f"{errors} errors")


if __name__ == "__main__":
    main()
