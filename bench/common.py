"""Shared helpers for the benchmarks: machine info, timing stats, tables, JSON results.

Benchmarks are plain scripts (``python -m bench.<name>``), never unit tests. Each one
prints a table and writes ``bench/results/<name>.json`` with the machine and the exact
command, so a number in docs/benchmarks.md can always be traced back to a run.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEMO_CSV = ROOT / "demo" / "catalogue.csv"
# Benchmarks get their own data dir (and so their own embedded Postgres) unless told otherwise.
DEFAULT_DATA_DIR = ROOT / "var" / "bench"


def bench_env() -> dict[str, str]:
    """The environment for this process and every subprocess a benchmark starts."""
    os.environ.setdefault("VITRINE_DATA_DIR", str(DEFAULT_DATA_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "searchsite.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # One loopback client sends far more than a shopper: benchmarks measure search, not the
    # per-client rate limits (empty = off; tests/catalog/test_ratelimit.py covers those).
    os.environ.setdefault("SEARCH_RATE_LIMIT", "")
    os.environ.setdefault("PHOTO_SEARCH_RATE_LIMIT", "")
    return dict(os.environ)


def setup_django() -> None:
    bench_env()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags"))
        isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f" {f}" in flags]
    except (OSError, StopIteration):
        isa = []
    try:
        import psutil

        ram_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        ram_gib = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    return {
        "cpu": cpu,
        "isa": isa,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        # Other work on the machine skews every number here: record how busy it was.
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "git_commit": commit + ("-dirty" if dirty else ""),
        "platform": platform.platform(),
    }


def command_line() -> str:
    env = f"VITRINE_DATA_DIR={shlex.quote(os.environ.get('VITRINE_DATA_DIR', str(DEFAULT_DATA_DIR)))}"
    if os.environ.get("REDIS_URL"):
        env += f" REDIS_URL={os.environ['REDIS_URL']}"
    module = sys.modules["__main__"].__spec__
    target = f"-m {module.name}" if module else sys.argv[0]
    return f"{env} .venv/bin/python {target} {shlex.join(sys.argv[1:])}".strip()


def write_result(name: str, results: dict[str, Any], started: float) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {
        "benchmark": name,
        "command": command_line(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runtime_s": round(time.time() - started, 1),
        "machine": machine_info(),
        "results": results,
    }
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)} ({payload['runtime_s']} s)")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value))


def stats_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean in milliseconds of a list of durations in seconds."""
    a = np.asarray(samples_s, dtype=np.float64) * 1000
    return {
        "n": int(a.size),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p90": round(float(np.percentile(a, 90)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "mean": round(float(a.mean()), 3),
    }


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str = "") -> str:
    """A GitHub-markdown table (pastes straight into docs/benchmarks.md)."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = [f"\n{title}"] if title else []
    lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.01:
            return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
        return f"{value:.2e}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


@contextmanager
def timer() -> Iterator[list[float]]:
    """``with timer() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def connect() -> psycopg.Connection:
    """A plain psycopg connection (autocommit, pgvector types) to the site's database: for raw
    queries next to the site's own (setup_django() first)."""
    from django.db import connection
    from pgvector.psycopg import register_vector

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    conn = psycopg.connect(**params, autocommit=True)
    register_vector(conn)
    return conn


def scalar(conn: psycopg.Connection, sql: str, params: Sequence[object] = ()) -> Any:
    """The one value a query returns (a count, a size, a flag)."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None, sql
    return row[0]


def post_search_image(port: int, data: bytes, filename: str, k: int) -> tuple[int, bytes, dict[str, str]]:
    """POST a photo to the site's /api/search/image on loopback: (status, body, headers)."""
    import http.client
    import uuid

    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n{k}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/api/search/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    resp = conn.getresponse()
    out = resp.read()
    headers = dict(resp.getheaders())
    conn.close()
    return resp.status, out, headers
