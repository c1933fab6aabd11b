"""Ingest throughput: `ingest_csv --wait` with real Celery workers vs the raw encoder on the same
photos, in one run, plus the memory profile of a large (100k-row) import.

1. For each catalogue of --photos (the demo's 2,500 products with their small PNGs, and the
   same products with 800 px JPEG photos), from an empty catalogue: `manage.py ingest_csv
   --wait` as a subprocess, with one worker on 'prepare' and one on 'embed' (as runsite starts
   them), both warmed by a small ingest first. Products/s from command start to all searchable.
2. The raw encoder on the first --raw-products of the same rows, same batch size
   (EMBED_BATCH_SIZE), in a fresh interpreter with the embed worker's OpenMP environment,
   just before and just after the timed ingest (the workers idle): read + decode (as the
   worker decodes, EMBED_JPEG_DRAFT included) + prepare, then the image tower, then the text
   tower, one after the other. The ratio is ingest products/s over the mean of the two.
3. A generated CSV of --bulk-rows rows (new SKUs, demo images reused): `ingest_csv`
   without --wait and no embed worker, so only the import phase runs; peak RSS of the
   command sampled every 0.2 s. The queued embedding messages are purged afterwards and
   the bulk products deleted.

Uses Redis db 14 as broker when REDIS_URL is unset and Redis answers on 127.0.0.1:6379.

    .venv/bin/python -m bench.ingest_throughput [--photos demo,jpeg800] [--bulk-rows 100000] [--raw-products 640]
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
from typing import TYPE_CHECKING

from bench.common import DEMO_CSV, ROOT, bench_env, log, table, write_result
from searchsite.supervisor import celery_worker_argv

if TYPE_CHECKING:  # Django is set up in main(), before the models are imported
    from embeddings.models import EmbeddingModel

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
        [
            *celery_worker_argv(queue, 1, name=f"bench-{queue}@%h"),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def worker_env(threads: str) -> dict[str, str]:
    """'default': torch's defaults; 'passive': OMP_WAIT_POLICY=PASSIVE; a number: OMP_NUM_THREADS."""
    # libgomp reads these when torch is first imported, so they must be in the environment.
    if threads == "default":
        return {}
    if threads == "passive":
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {"OMP_NUM_THREADS": threads}


def raw_encoder_subprocess(n: int, threads: str, csv_path: Path) -> dict:
    """The raw encoder in a fresh interpreter with the same OpenMP environment as the embed worker."""
    import json

    out = subprocess.run(
        [sys.executable, "-m", "bench.ingest_throughput", "--raw-only", str(n), "--raw-csv", str(csv_path)],
        cwd=ROOT,
        env={**bench_env(), **worker_env(threads)},
        capture_output=True,
        text=True,
        check=True,
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
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**bench_env(), "TQDM_DISABLE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
    return {
        "wall_s": wall,
        "peak_rss_mib": round(peak / 2**20, 1),
        "rss_samples": samples,
        "summary": out.strip().splitlines()[-1],
    }


def clear_catalogue(sku_prefix: str | None = None) -> None:
    from catalog.models import ImportJob, Product

    qs = Product.objects.all() if sku_prefix is None else Product.objects.filter(sku__startswith=sku_prefix)
    qs.delete()  # cascades to ProductVector
    if sku_prefix is None:
        ImportJob.objects.all().delete()


def write_csv(path: Path, rows: list[dict], n: int, prefix: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for i in range(n):
            row = dict(rows[i % len(rows)])
            row["sku"] = f"{prefix}{i:07d}"
            writer.writerow(row)


def raw_encoder(model: EmbeddingModel, csv_path: Path, n: int, batch: int) -> dict:
    """The encoder alone on the first n rows of `csv_path`, one step after the other: read and
    decode the photos as the embed worker does (EMBED_JPEG_DRAFT included) and prepare the
    image tower's input, then encode_pixel_signals, then encode_texts."""
    from django.conf import settings

    from catalog.models import Product
    from embeddings.registry import encoder_for
    from ml.transforms import open_image

    enc = encoder_for(model)
    with open(csv_path, newline="") as f:
        rows = [row for _, row in zip(range(n), csv.DictReader(f))]
    texts = [
        Product(title=r["title"], description=r["description"], category=r["category"]).text_for_embedding for r in rows
    ]
    paths = [csv_path.parent / r["image"] for r in rows]
    draft = enc.image_size if settings.EMBED_JPEG_DRAFT else None
    enc.encode_images([open_image(paths[0].read_bytes())])  # warm
    enc.encode_texts(["warm"])
    t_dec = t_img = t_txt = 0.0
    cpu = time.process_time()
    for s in range(0, len(rows), batch):
        t = time.perf_counter()
        pixels = enc.image_input([open_image(p.read_bytes(), draft_size=draft) for p in paths[s : s + batch]])
        t_dec += time.perf_counter() - t
        t = time.perf_counter()
        enc.encode_pixel_signals(pixels)
        t_img += time.perf_counter() - t
        t = time.perf_counter()
        enc.encode_texts(texts[s : s + batch])
        t_txt += time.perf_counter() - t
    total = t_dec + t_img + t_txt
    cpu = time.process_time() - cpu
    return {
        "products": len(rows),
        "batch": batch,
        "cpu_s": cpu,
        "cpu_ms_per_product": 1000 * cpu / len(rows),
        "decode_s": t_dec,
        "encode_images_s": t_img,
        "encode_texts_s": t_txt,
        "images/s": len(rows) / t_img,
        "texts/s": len(rows) / t_txt,
        "products/s": len(rows) / total,
        "bf16": enc.bf16,
        "text_bf16": enc.text_bf16,
        "backbone": enc.backbone,
        "jpeg_draft": bool(draft),
    }


def jpeg_catalogue(work: Path, rows: list[dict], side: int = 800) -> Path:
    """The demo catalogue with every photo as a `side` px JPEG (q90, as shops upload product
    photos): the demo's small PNGs scaled up, with a little grain so they compress like photos."""
    import numpy as np
    from PIL import Image

    folder = work / f"jpeg{side}"
    out_csv = folder / "catalogue.csv"
    if out_csv.exists():
        return out_csv
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    converted = []
    for row in rows:
        row = dict(row)
        refs = [row["image"], *[r for r in (row.get("images") or "").split("|") if r]]
        names = []
        for ref in refs:
            name = "images/" + Path(ref).stem + ".jpg"
            image = Image.open(DEMO_CSV.parent / ref).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
            grain = rng.normal(0, 6, (side, side, 3))
            image = Image.fromarray(np.clip(np.asarray(image, np.float32) + grain, 0, 255).astype(np.uint8))
            image.save(folder / name, "JPEG", quality=90)
            names.append(name)
        row["image"], row["images"] = names[0], "|".join(names[1:])
        converted.append(row)
    with open(out_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(converted[0]))
        writer.writeheader()
        writer.writerows(converted)
    return out_csv


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
    marks = (
        {f"rss_at_{p}pct_mib": samples[min(len(samples) - 1, int(len(samples) * p / 100))][1] for p in (10, 50, 90)}
        if samples
        else {}
    )
    result = {**bulk, "rows": n, "import_phase_s": import_s, "rows/s": n / import_s, **marks}
    if started is not None:
        table([_bulk_row(result)], title="Bulk import (import phase only)")
        print(f"RSS at 10/50/90% of the run: {marks}")
        write_result("ingest_bulk", result, started)
    return result


def _bulk_row(b: dict) -> dict:
    return {
        "what": f"bulk ingest_csv (no --wait), {b['rows']:,} rows",
        "seconds": b["import_phase_s"],
        "per_s": b["rows/s"],
        "unit": "rows/s (import phase)",
        "peak_rss_mib": b["peak_rss_mib"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bulk-rows", type=int, default=100_000)
    parser.add_argument("--raw-products", type=int, default=640)
    parser.add_argument("--raw-only", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--raw-csv", default=str(DEMO_CSV), help=argparse.SUPPRESS)
    parser.add_argument(
        "--photos",
        default="demo,jpeg800",
        help="catalogues to ingest, one timed run each: demo (the demo's small PNGs), "
        "jpeg800 (the same products with 800 px JPEG photos)",
    )
    parser.add_argument("--bulk-only", action="store_true", help="only the bulk import (writes ingest_bulk.json)")
    parser.add_argument(
        "--embed-threads",
        default="passive",
        help="OpenMP setting of the embed worker, one timed ingest each: default, passive "
        "(OMP_WAIT_POLICY=PASSIVE) or a thread count",
    )
    args = parser.parse_args()
    started = time.time()
    bench_env()
    if args.raw_only:
        import json

        from bench.common import setup_django
        from django.conf import settings as dj_settings

        setup_django()
        from embeddings.models import EmbeddingModel

        model = EmbeddingModel.active()
        assert model is not None, "no active model: the demo import registers one"
        print(json.dumps(raw_encoder(model, Path(args.raw_csv), args.raw_only, dj_settings.EMBED_BATCH_SIZE)))
        return
    choose_broker()
    from bench.common import setup_django

    setup_django()
    from django.conf import settings

    from bench.demo_catalogue import run_setup_subprocess

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

    if args.bulk_only:
        bulk_import(args.bulk_rows, work, demo_rows, started)
        return
    catalogues = {"demo": DEMO_CSV, "jpeg800": None}
    runs: list[dict] = []
    for photos in args.photos.split(","):
        csv_path = catalogues[photos] or jpeg_catalogue(work, demo_rows)
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        warm_csv = csv_path.parent / "warm-bench.csv" if photos != "demo" else work / "warm.csv"
        write_csv(warm_csv, rows[-64:], 64, "WARM-")
        for threads in args.embed_threads.split(","):
            runs.append(timed_ingest(photos, csv_path, warm_csv, threads, len(rows), args.raw_products))

    bulk = bulk_import(args.bulk_rows, work, demo_rows, None) if args.bulk_rows else {}
    results = {
        "broker": "redis" if os.environ.get("REDIS_URL") else "filesystem",
        "model": model.name,
        "backbone": model.backbone,
        "embed_batch_size": settings.EMBED_BATCH_SIZE,
        "jpeg_draft": settings.EMBED_JPEG_DRAFT,
        "runs": runs,
        "bulk_import": bulk,
    }
    table_rows = []
    for r in runs:
        raw = r["raw_encoder"]
        table_rows += [
            {
                "what": f"{r['photos']}: ingest_csv --wait, {r['products']:,} rows, 1 prepare + 1 embed worker "
                f"(embed threads {r['embed_threads']})",
                "seconds": r["wall_s"],
                "per_s": r["products/s"],
                "unit": "products/s (start to all searchable)",
                "peak_rss_mib": r["peak_rss_mib"],
            },
            {
                "what": "  of which import phase (rows stored + queued)",
                "seconds": r["import_phase_s"] or 0.0,
                "per_s": r["products"] / r["import_phase_s"] if r["import_phase_s"] else 0.0,
                "unit": "rows/s",
                "peak_rss_mib": "",
            },
            {
                "what": f"{r['photos']}: raw encoder, {raw['products']} products (decode + images + texts), "
                "before / after the ingest",
                "seconds": f"{r['raw_before']['products/s']:.1f} / {r['raw_after']['products/s']:.1f}",
                "per_s": raw["products/s"],
                "unit": "products/s (mean)",
                "peak_rss_mib": "",
            },
            {
                "what": "  decode + prepare / encode_images / encode_texts (mean s)",
                "seconds": f"{raw['decode_s']:.1f} / {raw['encode_images_s']:.1f} / {raw['encode_texts_s']:.1f}",
                "per_s": "",
                "unit": "",
                "peak_rss_mib": "",
            },
            {
                "what": f"{r['photos']}: ratio ingest / raw encoder",
                "seconds": "",
                "per_s": r["ratio_ingest_over_raw"],
                "unit": f"load {r['load_avg_1m']}",
                "peak_rss_mib": "",
            },
            {
                "what": f"{r['photos']}: CPU ms per product, ingest (all processes) / raw encoder",
                "seconds": f"{r['cpu_ms_per_product']:.0f} / {raw['cpu_ms_per_product']:.0f}",
                "per_s": r["cpu_ratio_raw_over_ingest"],
                "unit": "ratio raw / ingest",
                "peak_rss_mib": "",
            },
        ]
    if bulk:
        table_rows.append(_bulk_row(bulk))
    table(table_rows, title="Ingest throughput")
    write_result("ingest_throughput", results, started)


def postgres_pid() -> int:
    from django.conf import settings

    return int((Path(settings.DATA_DIR) / "pg" / "postmaster.pid").read_text().split()[0])


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) of these processes and their children, live and exited."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def timed_ingest(photos: str, csv_path: Path, warm_csv: Path, threads: str, n_rows: int, raw_products: int) -> dict:
    """One timed `ingest_csv --wait` of csv_path into an empty catalogue, with the raw encoder on
    the same photos just before and just after it (the machine is shared: the mean of the two
    is the fairer comparison)."""
    from django.conf import settings

    from catalog.models import ImportJob

    purge_broker()
    clear_catalogue()
    for sub in ("products", "thumbs"):
        shutil.rmtree(Path(settings.MEDIA_ROOT) / sub, ignore_errors=True)  # cold: store every photo again
    log(f"{photos}: workers 'prepare' and 'embed' (embed threads: {threads})")
    workers = [start_worker("prepare"), start_worker("embed", threads)]
    try:
        wait_workers(["prepare", "embed"])
        log("warm-up ingest (64 rows) to load the encoder in the embed worker")
        run_ingest(warm_csv, wait=True)
        clear_catalogue("WARM-")
        log(f"raw encoder on {raw_products} of the same products (before)")
        before = raw_encoder_subprocess(raw_products, threads, csv_path)
        load = [os.getloadavg()[0]]
        log(f"timed: ingest_csv {csv_path} --wait")
        groups = {"workers": [w.pid for w in workers], "postgres": [postgres_pid()]}
        cpu_before = {k: tree_cpu(pids) for k, pids in groups.items()}
        import resource

        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        demo = run_ingest(csv_path, wait=True)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = {k: tree_cpu(pids) - cpu_before[k] for k, pids in groups.items()}
        cpu["ingest_csv"] = (children.ru_utime + children.ru_stime) - (
            children_before.ru_utime + children_before.ru_stime
        )
        demo["cpu_s"] = {k: round(v, 1) for k, v in cpu.items()}
        load.append(os.getloadavg()[0])
        job = ImportJob.objects.filter(source_name=str(csv_path)).order_by("-created_at").first()
        demo["import_phase_s"] = (job.finished_at - job.created_at).total_seconds() if job and job.finished_at else None
        demo.pop("rss_samples")
        log(f"{photos}: {demo['wall_s']:.1f} s; raw encoder again (after)")
        after = raw_encoder_subprocess(raw_products, threads, csv_path)
        load.append(os.getloadavg()[0])
    finally:
        stop(workers)
    raw = {k: (before[k] + after[k]) / 2 if isinstance(before[k], float) else before[k] for k in before}
    demo.update(
        photos=photos,
        embed_threads=threads,
        products=n_rows,
        raw_encoder=raw,
        raw_before=before,
        raw_after=after,
        load_avg_1m=[round(x, 1) for x in load],
    )
    demo["products/s"] = n_rows / demo["wall_s"]
    demo["ratio_ingest_over_raw"] = demo["products/s"] / raw["products/s"]
    # The same comparison in CPU: what a product costs all the processes of the ingest against
    # what it costs the raw encoder (robust to the other tenants of a shared machine).
    demo["cpu_ms_per_product"] = 1000 * sum(demo["cpu_s"].values()) / n_rows
    demo["cpu_ratio_raw_over_ingest"] = raw["cpu_ms_per_product"] / demo["cpu_ms_per_product"]
    log(
        f"{photos}: ingest {demo['products/s']:.1f} products/s; raw {before['products/s']:.1f} / "
        f"{after['products/s']:.1f}; ratio {demo['ratio_ingest_over_raw']:.2f}; CPU per product: ingest "
        f"{demo['cpu_ms_per_product']:.0f} ms {demo['cpu_s']}, raw {raw['cpu_ms_per_product']:.0f} ms; "
        f"ratio {demo['cpu_ratio_raw_over_ingest']:.2f}"
    )
    return demo


if __name__ == "__main__":
    main()
