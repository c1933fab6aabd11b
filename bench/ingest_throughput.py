"""Ingest throughput: `ingest_csv --wait` with real Celery workers vs the raw encoder, in one run,
plus the memory profile of a large (100k-row) import.

1. Demo catalogue (2,500 rows) from an empty catalogue: `manage.py ingest_csv --wait` as a
   subprocess, with one worker on 'prepare' and one on 'embed' (as runsite starts them),
   both warmed by a small ingest first. Products/s from command start to all searchable.
2. The raw encoder on the same images/texts, same batch size (EMBED_BATCH_SIZE), in this
   process with the workers stopped: image decode + encode_images + encode_texts.
3. A generated CSV of --bulk-rows rows (new SKUs, demo images reused): `ingest_csv`
   without --wait and no embed worker, so only the import phase runs; peak RSS of the
   command sampled every 0.2 s. The queued embedding messages are purged afterwards and
   the bulk products deleted.

Uses Redis db 14 as broker when REDIS_URL is unset and Redis answers on 127.0.0.1:6379.

    .venv/bin/python -m bench.ingest_throughput [--bulk-rows 100000] [--raw-products 640]
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import DEMO_CSV, ROOT, bench_env, log, table, write_result

DEFAULT_REDIS = "redis://127.0.0.1:6379/14"


def choose_broker() -> None:
    if os.environ.get("REDIS_URL"):
        return
    try:
        import redis

        redis.Redis.from_url(DEFAULT_REDIS, socket_timeout=1).ping()
        os.environ["REDIS_URL"] = DEFAULT_REDIS
    except Exception:  # noqa: BLE001 - no Redis: kombu's filesystem transport
        pass


def purge_broker() -> None:
    url = os.environ.get("REDIS_URL")
    if url:
        import redis

        redis.Redis.from_url(url).flushdb()  # db 14 belongs to the benchmarks
    else:
        from django.conf import settings

        for f in (settings.BROKER_DIR / "queue").glob("*"):
            f.unlink()


def start_worker(queue: str, threads: str = "default") -> subprocess.Popen:
    data_dir = Path(bench_env()["VITRINE_DATA_DIR"])
    env = bench_env()
    env.update(worker_env(threads))
    log_file = open(data_dir / f"worker-{queue}-bench.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "searchsite", "worker", "-Q", queue, "-c", "1",
         "-n", f"bench-{queue}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
    )


def worker_env(threads: str) -> dict[str, str]:
    """'default': torch's defaults; 'passive': OMP_WAIT_POLICY=PASSIVE; a number: OMP_NUM_THREADS."""
    # libgomp reads these when torch is first imported, so they must be in the environment.
    if threads == "default":
        return {}
    if threads == "passive":
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {"OMP_NUM_THREADS": threads}


def raw_encoder_subprocess(n: int, threads: str) -> dict:
    """The raw encoder in a fresh interpreter with the same OpenMP environment as the embed worker."""
    import json

    out = subprocess.run(
        [sys.executable, "-m", "bench.ingest_throughput", "--raw-only", str(n)],
        cwd=ROOT, env={**bench_env(), **worker_env(threads)}, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def wait_workers(names: list[str], timeout: float = 120) -> None:
    from searchsite.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        seen = {name.split("@")[0] for reply in replies for name in reply}
        if all(f"bench-{n}" in seen for n in names):
            return
        time.sleep(0.5)
    raise RuntimeError(f"workers {names} did not start; see VITRINE_DATA_DIR/worker-*-bench.log")


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def run_ingest(csv_path: Path, wait: bool) -> dict:
    """Run `manage.py ingest_csv` as a subprocess; wall time and peak RSS (sampled)."""
    import psutil

    cmd = [sys.executable, "manage.py", "ingest_csv", str(csv_path), "--quiet-errors"] + (["--wait"] if wait else [])
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**bench_env(), "TQDM_DISABLE": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak, samples = 0, []
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss
        except psutil.NoSuchProcess:
            break
        peak = max(peak, rss)
        samples.append((round(time.perf_counter() - t, 1), round(rss / 2**20, 1)))
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"ingest_csv failed: {err[-2000:]}")
    return {"wall_s": wall, "peak_rss_mib": round(peak / 2**20, 1), "rss_samples": samples, "summary": out.strip().splitlines()[-1]}


def clear_catalogue(sku_prefix: str | None = None) -> None:
    from catalog.models import ImportJob, Product

    qs = Product.objects.all() if sku_prefix is None else Product.objects.filter(sku__startswith=sku_prefix)
    qs.delete()  # cascades to ProductVector
    if sku_prefix is None:
        ImportJob.objects.all().delete()


def write_csv(path: Path, rows: list[dict], n: int, prefix: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["sku", "title", "description", "category", "price", "image"])
        writer.writeheader()
        for i in range(n):
            row = dict(rows[i % len(rows)])
            row["sku"] = f"{prefix}{i:07d}"
            writer.writerow(row)


def raw_encoder(model, n: int, batch: int) -> dict:  # type: ignore[no-untyped-def]
    """The encoder alone on the first n demo products: decode, encode_images, encode_texts."""
    from django.core.files.storage import default_storage

    from catalog.models import Product
    from embeddings.registry import encoder_for
    from embeddings.transforms import open_image

    enc = encoder_for(model)
    products = list(Product.objects.order_by("pk")[:n])
    enc.encode_images([open_image(default_storage.open(products[0].image.name, "rb").read())])  # warm
    enc.encode_texts(["warm"])
    t_dec = t_img = t_txt = 0.0
    for s in range(0, len(products), batch):
        chunk = products[s : s + batch]
        t = time.perf_counter()
        images = [open_image(default_storage.open(p.image.name, "rb").read()) for p in chunk]
        t_dec += time.perf_counter() - t
        t = time.perf_counter()
        enc.encode_images(images)
        t_img += time.perf_counter() - t
        t = time.perf_counter()
        enc.encode_texts([p.text_for_embedding for p in chunk])
        t_txt += time.perf_counter() - t
    total = t_dec + t_img + t_txt
    return {"products": len(products), "batch": batch, "decode_s": t_dec, "encode_images_s": t_img,
            "encode_texts_s": t_txt, "images/s": len(products) / t_img, "texts/s": len(products) / t_txt,
            "products/s": len(products) / total, "bf16": enc.bf16, "text_bf16": enc.text_bf16, "backbone": enc.backbone}


def bulk_import(n: int, work: Path, demo_rows: list[dict], started: float | None) -> dict:
    """Import phase of an n-row CSV with no embed worker: rows/s and the command's RSS over time."""
    from catalog.models import ImportJob

    log(f"bulk import of {n:,} rows (no embed worker; import phase only)")
    bulk_csv = work / f"bulk-{n}.csv"
    if not bulk_csv.exists():
        write_csv(bulk_csv, demo_rows, n, "BX-")
    purge_broker()
    bulk = run_ingest(bulk_csv, wait=False)
    job = ImportJob.objects.filter(source_name=str(bulk_csv)).order_by("-created_at").first()
    import_s = (job.finished_at - job.created_at).total_seconds() if job and job.finished_at else bulk["wall_s"]
    purge_broker()  # the queued embedding batches are not part of this benchmark
    clear_catalogue("BX-")
    samples = bulk.pop("rss_samples")
    # RSS at 10%, 50%, 90% of the run: flat when the import streams.
    marks = {f"rss_at_{p}pct_mib": samples[min(len(samples) - 1, int(len(samples) * p / 100))][1] for p in (10, 50, 90)} if samples else {}
    result = {**bulk, "rows": n, "import_phase_s": import_s, "rows/s": n / import_s, **marks}
    if started is not None:
        table([_bulk_row(result)], title="Bulk import (import phase only)")
        print(f"RSS at 10/50/90% of the run: {marks}")
        write_result("ingest_bulk", result, started)
    return result


def _bulk_row(b: dict) -> dict:
    return {"what": f"bulk ingest_csv (no --wait), {b['rows']:,} rows", "seconds": b["import_phase_s"],
            "per_s": b["rows/s"], "unit": "rows/s (import phase)", "peak_rss_mib": b["peak_rss_mib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bulk-rows", type=int, default=100_000)
    parser.add_argument("--raw-products", type=int, default=640)
    parser.add_argument("--raw-only", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--bulk-only", action="store_true", help="only the bulk import (writes ingest_bulk.json)")
    parser.add_argument("--embed-threads", default="default,passive",
                        help="OpenMP setting of the embed worker, one timed ingest each: default, passive "
                        "(OMP_WAIT_POLICY=PASSIVE) or a thread count")
    args = parser.parse_args()
    started = time.time()
    bench_env()
    if args.raw_only:
        import json

        from bench.common import setup_django
        from django.conf import settings as dj_settings

        setup_django()
        from embeddings.models import EmbeddingModel

        print(json.dumps(raw_encoder(EmbeddingModel.active(), args.raw_only, dj_settings.EMBED_BATCH_SIZE)))
        return
    choose_broker()
    from bench.common import setup_django

    setup_django()
    from django.conf import settings

    from bench.demo_catalogue import run_setup_subprocess
    from catalog.models import ImportJob

    # registers the default model (loads it in a child, not here)
    model = run_setup_subprocess(embed=False)
    work = Path(settings.DATA_DIR) / "ingest-bench"
    work.mkdir(parents=True, exist_ok=True)
    with open(DEMO_CSV, newline="") as f:
        demo_rows = list(csv.DictReader(f))
    if not (work / "images").exists():
        shutil.copytree(DEMO_CSV.parent / "images", work / "images")
    warm_csv = work / "warm.csv"
    write_csv(warm_csv, demo_rows[-64:], 64, "WARM-")

    demos: dict[str, dict] = {}
    if args.bulk_only:
        bulk_import(args.bulk_rows, work, demo_rows, started)
        return
    for threads in args.embed_threads.split(","):
        purge_broker()
        clear_catalogue()
        for sub in ("products", "thumbs"):
            shutil.rmtree(Path(settings.MEDIA_ROOT) / sub, ignore_errors=True)  # cold: store every photo again
        log(f"broker {settings.CELERY_BROKER_URL.split('@')[-1]}; workers 'prepare' and 'embed' (embed threads: {threads})")
        workers = [start_worker("prepare"), start_worker("embed", threads)]
        try:
            wait_workers(["prepare", "embed"])
            log("warm-up ingest (64 rows) to load the encoder in the embed worker")
            run_ingest(warm_csv, wait=True)
            clear_catalogue("WARM-")
            log("timed: ingest_csv demo/catalogue.csv --wait")
            demo = run_ingest(DEMO_CSV, wait=True)
            job = ImportJob.objects.filter(source_name=str(DEMO_CSV)).order_by("-created_at").first()
            demo["import_phase_s"] = (job.finished_at - job.created_at).total_seconds() if job and job.finished_at else None
            demo.pop("rss_samples")
            demos[threads] = demo
            log(f"embed threads {threads}: {demo['wall_s']:.1f} s")
        finally:
            stop(workers)
    import psutil  # noqa: F401 - needed by run_ingest; fail early

    log(f"raw encoder on {args.raw_products} of the same products, batch {settings.EMBED_BATCH_SIZE}")
    # Same OpenMP environment as the faster embed worker above.
    best_threads = max(demos, key=lambda k: len(demo_rows) / demos[k]["wall_s"])
    raw = raw_encoder_subprocess(args.raw_products, best_threads)
    raw["omp_env"] = best_threads

    bulk = bulk_import(args.bulk_rows, work, demo_rows, None) if args.bulk_rows else {}

    n_demo = len(demo_rows)
    for d in demos.values():
        d["products"] = n_demo
        d["products/s"] = n_demo / d["wall_s"]
    best = max(demos, key=lambda k: demos[k]["products/s"])
    demo = demos[best]
    ingest_pps = demo["products/s"]
    results = {
        "broker": "redis" if os.environ.get("REDIS_URL") else "filesystem",
        "model": model.name, "backbone": model.backbone, "embed_batch_size": settings.EMBED_BATCH_SIZE,
        "demo_ingest_by_embed_threads": demos,
        "best_embed_threads": best,
        "raw_encoder": raw,
        "ratio_ingest_over_raw": ingest_pps / raw["products/s"],
        "bulk_import": bulk,
    }
    rows = []
    for threads, d in demos.items():
        rows += [
            {"what": f"ingest_csv --wait, {n_demo:,} demo rows, 1 prepare + 1 embed worker (embed threads {threads})",
             "seconds": d["wall_s"], "per_s": d["products/s"], "unit": "products/s (start to all searchable)",
             "peak_rss_mib": d["peak_rss_mib"]},
            {"what": "  of which import phase (rows stored + queued)", "seconds": d["import_phase_s"] or 0.0,
             "per_s": n_demo / d["import_phase_s"] if d["import_phase_s"] else 0.0, "unit": "rows/s", "peak_rss_mib": ""},
        ]
    rows += [
        {"what": f"raw encoder, {raw['products']} products (decode + images + texts)", "seconds": raw["decode_s"] + raw["encode_images_s"] + raw["encode_texts_s"],
         "per_s": raw["products/s"], "unit": "products/s", "peak_rss_mib": ""},
        {"what": f"  encode_images ({raw['backbone']}, bf16={raw['bf16']})", "seconds": raw["encode_images_s"], "per_s": raw["images/s"], "unit": "images/s", "peak_rss_mib": ""},
        {"what": f"  encode_texts (MiniLM, bf16={raw['text_bf16']})", "seconds": raw["encode_texts_s"], "per_s": raw["texts/s"], "unit": "texts/s", "peak_rss_mib": ""},
        {"what": f"ratio ingest (embed threads {best}) / raw encoder", "seconds": "", "per_s": results["ratio_ingest_over_raw"], "unit": "", "peak_rss_mib": ""},
    ]
    if bulk:
        rows.append(_bulk_row(bulk))
    table(rows, title="Ingest throughput")
    write_result("ingest_throughput", results, started)


if __name__ == "__main__":
    main()
