"""Resident memory of the processes that never run a model, before and after real work.

Starts the `prepare` Celery worker and Celery beat exactly as `runsite` does
(searchsite.supervisor.celery_worker_argv), on the benchmark's own data dir and Redis, then:

1. measures each process (the worker's main process and its pool processes, beat): VmRSS
   from /proc/<pid>/status, and whether torch is loaded (libtorch mapped, /proc/<pid>/maps);
2. uploads the demo catalogue (2,500 rows and their photos, as a ZIP) through
   catalog.uploads.queue_import, as the admin and POST /api/imports do; the prepare worker
   unpacks it, saves the products and their photos and makes thumbnails (no embed worker
   runs: the embedding batches wait in Redis and are purged at the end);
3. measures again once the import is done, then runs management commands that run no model
   (`check`, `showmigrations`, `prune_search_log`, `embed_missing`) in processes of their own
   and reports their peak RSS and whether torch was imported.

For comparison it also measures one embed worker after it loaded the active model (the
model-running side, which keeps torch).

    .venv/bin/python -m bench.process_memory
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from bench.common import DEMO_CSV, ROOT, bench_env, log, table, write_result

DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
MiB = 1024 * 1024


def group_pids(leader: int) -> list[int]:
    """The leader and every process in its process group (Celery's pool processes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == leader:
                pids.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return sorted(pids, key=lambda p: (p != leader, p))


def kib_field(path: str, field: str) -> float:
    """A "Field:  1234 kB" line of a /proc file, in MiB."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def torch_loaded(pid: int) -> bool:
    """True when the process has torch's shared library mapped (imported torch)."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def snapshot(name: str, leader: int, when: str) -> list[dict]:
    rows = []
    for pid in group_pids(leader):
        role = "main" if pid == leader else "pool"
        # RSS counts pages a pool process shares with its parent (fork) in both; PSS splits them.
        rows.append(
            {
                "process": f"{name} ({role})",
                "when": when,
                "pid": pid,
                "rss_mib": round(kib_field(f"/proc/{pid}/status", "VmRSS"), 1),
                "pss_mib": round(kib_field(f"/proc/{pid}/smaps_rollup", "Pss"), 1),
                "torch": torch_loaded(pid),
            }
        )
    return rows


def start(argv: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def demo_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.write(DEMO_CSV, "catalogue.csv")
        for image in sorted((DEMO_CSV.parent / "images").iterdir()):
            archive.write(image, f"images/{image.name}")
    return out.getvalue()


# A command in a process of its own; prints its peak RSS (VmHWM: ru_maxrss would start from this
# harness's, which has torch loaded) and whether torch was imported.
PROBE = (
    "import sys, django; django.setup(); "
    "from django.core.management import call_command; call_command(*sys.argv[1:]); "
    "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]; "
    "print('PROBE', int(hwm) / 1024, 'torch' in sys.modules)"
)
COMMANDS = [["check"], ["showmigrations", "catalog"], ["prune_search_log"], ["embed_missing"]]


def run_command(argv: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    line = next(l for l in out.stdout.splitlines() if l.startswith("PROBE"))
    _, peak, torch = line.split()
    return {
        "process": "manage.py " + " ".join(argv),
        "when": "peak",
        "pid": "",
        "rss_mib": round(float(peak), 1),
        "pss_mib": "",
        "torch": torch == "True",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=str(ROOT / "var" / "bench-memory"))
    parser.add_argument("--skip-embed", action="store_true", help="do not measure an embed worker")
    args = parser.parse_args()
    os.environ.setdefault("VITRINE_DATA_DIR", args.data_dir)
    os.environ.setdefault("REDIS_URL", DEFAULT_REDIS)
    env = bench_env()
    started = time.time()
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import redis
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command
    from django.db import transaction

    from catalog.models import ImportJob, Product
    from catalog.uploads import queue_import
    from embeddings.registry import ensure_active_model
    from searchsite.supervisor import celery_beat_argv, celery_worker_argv

    call_command("migrate", interactive=False, verbosity=0)
    # A fresh catalogue each run: the import must create every product and thumbnail.
    Product.objects.all().delete()
    ImportJob.objects.all().delete()
    ensure_active_model()  # registered here (it loads the model), as the web process does on a fresh site
    broker = redis.Redis.from_url(os.environ["REDIS_URL"])
    broker.flushdb()
    data_dir = Path(os.environ["VITRINE_DATA_DIR"])
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    prepare = start(celery_worker_argv("prepare"), data_dir / "logs" / "bench-worker-prepare.log", env)
    beat = start(
        celery_beat_argv(data_dir / "celerybeat-schedule"),
        data_dir / "logs" / "bench-beat.log",
        env,
    )
    rows: list[dict] = []
    try:
        wait_for(lambda: "ready" in (data_dir / "logs" / "bench-worker-prepare.log").read_text(), 120, "prepare worker")
        time.sleep(5)  # the start-up reconcile runs first
        rows += snapshot("worker-prepare", prepare.pid, "before")
        rows += snapshot("beat", beat.pid, "before")
        t = time.perf_counter()
        with transaction.atomic():
            job = queue_import(SimpleUploadedFile("demo.zip", demo_zip(), "application/zip"))
        log(f"import #{job.pk} queued")

        def done() -> bool:
            job.refresh_from_db()
            return job.status not in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING)

        wait_for(done, 1200, "the import")
        import_s = time.perf_counter() - t
        thumbs = Product.objects.exclude(thumbnail="").count()
        log(f"import #{job.pk}: {job.status} {job.summary()} in {import_s:.0f}s; {thumbs} thumbnails")
        rows += snapshot("worker-prepare", prepare.pid, "after")
        rows += snapshot("beat", beat.pid, "after")
        rows += [run_command(argv, env) for argv in COMMANDS]
        if not args.skip_embed:
            embed = start(celery_worker_argv("embed"), data_dir / "logs" / "bench-worker-embed.log", env)
            try:
                # It loads the active model with its first batch (the queued demo batches).
                wait_for(
                    lambda: Product.objects.filter(vectors__isnull=False).exists(),
                    600,
                    "the embed worker's first batch",
                )
                rows += snapshot("worker-embed", embed.pid, "after first batch")
            finally:
                stop(embed)
    finally:
        stop(prepare)
        stop(beat)
        broker.flushdb()
    table(rows, ["process", "when", "rss_mib", "pss_mib", "torch"], title="Resident memory (VmRSS, MiB)")
    write_result(
        "process_memory",
        {
            "processes": rows,
            "import": {
                "rows": job.total_rows,
                "status": job.status,
                "summary": job.summary(),
                "seconds": round(import_s, 1),
                "thumbnails": thumbs,
            },
        },
        started,
    )


if __name__ == "__main__":
    main()
