"""Re-embedding a large catalogue under a newly trained joint model, with real Celery workers.

    .venv/bin/python -m bench.reembed_scale --products 70000          (make bench-reembed)

What a shop waits for after every training: the catalogue re-embedded under the new model
until every product is searchable with it. A joint model on the same backbone reads the
pretrained signals the serving model already stored (unit backbone features, MiniLM sentence
vectors: embeddings/tasks.py, `stored_pretrained`), so its re-embedding runs the two heads and
the GRU text tower, not the backbone or MiniLM.

Real rows: `--products` Product rows and their vectors under the default model, loaded with
COPY as bench/catalogue_scale.py loads them (synthetic vectors clustered around the model's
own vectors of 1,000 demo products; titles are a demo title plus two demo words), in their own
data dir (var/bench-70k for 70,000). The joint model is trained by `ml.training.train` on the
first TRAIN_ROWS demo products with a short schedule (its quality does not change what
re-embedding costs; its towers are the default sizes). It is registered like a trained model
and activated with `start_activation` (every product queued in EMBED_BATCH_SIZE batches) while
one embed worker runs as `runsite` starts it (`-c 1`, Redis broker); the time is from the
activation's start to the switch (every vector stored, then the model's HNSW indexes built
in one pass: registry.finish_activation_if_complete). The index build is timed from the
first moment Postgres reports it (pg_stat_progress_create_index) to the switch. The CPU of
the worker and of Postgres is summed over their process trees.

For comparison, in the same run: the raw full encoder (backbone + MiniLM on 640 demo products
in a fresh interpreter, bench/ingest_throughput.py), the rate that a catalogue embedded for
the first time, or moved to another backbone, is bound by.

Each run activates a new model: the one it replaces is retired and is the next run's donor.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from bench.catalogue_scale import default_data_dir, load_catalogue, load_centres
from bench.common import DEMO_CSV, bench_env, log, table, write_result

TRAIN_ROWS = 600
RAW_PRODUCTS = 640
TARGET_MINUTES = 15.0


def train_checkpoint(data_dir: Path, backbone: str) -> Path:
    """A joint model (image head + GRU) on the demo's first TRAIN_ROWS products, trained once per data dir."""
    path = data_dir / "reembed-model" / "model.pt"
    if path.exists():
        return path
    from ml.config import ImageTowerCfg, TextTowerCfg, TrainCfg
    from ml.data import read_catalogue_csv
    from ml.training import train

    log(f"training a joint model on {TRAIN_ROWS} demo products (short schedule)")
    train(
        read_catalogue_csv(DEMO_CSV)[:TRAIN_ROWS],
        ImageTowerCfg(backbone=backbone),
        TextTowerCfg(),
        TrainCfg(epochs=2, distill=False, flip_augment=False, perturbed_views=0),
        path.parent,
    )
    return path


def index_build_running() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_progress_create_index")
        return bool(cursor.fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=70_000)
    parser.add_argument("--data-dir", default="", help="default var/bench-70k for 70,000 products")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw encoder comparison")
    args = parser.parse_args()
    started = time.time()
    data_dir = Path(args.data_dir or default_data_dir(args.products)).resolve()
    os.environ["VITRINE_DATA_DIR"] = str(data_dir)
    from bench.ingest_throughput import (
        choose_broker,
        purge_broker,
        raw_encoder_subprocess,
        start_worker,
        tree_cpu,
        wait_workers,
    )

    choose_broker()
    bench_env()
    from bench.common import setup_django

    setup_django()
    from django.conf import settings

    from bench.load_test import postgres_pid
    from embeddings.dispatch import start_activation
    from embeddings.models import EmbeddingModel, ProductVector
    from embeddings.registry import register_checkpoint

    image_c, text_c, centres = load_centres(data_dir)
    donor = EmbeddingModel.active()
    assert donor is not None
    results: dict = {"products": args.products, "donor": donor.name, "embed_batch_size": settings.EMBED_BATCH_SIZE}
    if not donor.joint:  # a later run's donor is the previous run's model, its rows already there
        results["load"] = load_catalogue(args.products, donor.pk, image_c, text_c, centres)
        log(f"load: {results['load']}")

    trained = train_checkpoint(data_dir, donor.backbone)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = trained.parent / f"reembed-{stamp}.pt"
    shutil.copyfile(trained, path)
    model = register_checkpoint(path, name=f"reembed-{stamp}")
    results["model"] = model.name

    if not args.no_raw:
        log(f"raw full encoder (backbone + MiniLM), {RAW_PRODUCTS} demo products")
        results["raw_encoder"] = raw_encoder_subprocess(RAW_PRODUCTS, "default", DEMO_CSV)
        log(f"raw encoder: {results['raw_encoder']}")

    purge_broker()
    worker = start_worker("embed")
    try:
        wait_workers(["embed"])
        pg = postgres_pid()
        cpu0 = {"worker": tree_cpu([worker.pid]), "postgres": tree_cpu([pg])}
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        log(f"activating {model.name}: re-embedding {args.products:,} products")
        start_activation(model)
        queued = time.perf_counter() - t0
        last = 0.0
        build_seen = None
        while True:
            model.refresh_from_db()
            if model.status == EmbeddingModel.Status.ACTIVE:
                break
            if build_seen is None and index_build_running():
                build_seen = time.perf_counter()
                log(f"vectors stored, building the indexes, {build_seen - t0:.0f} s")
            if worker.poll() is not None:
                raise RuntimeError("the embed worker exited; see its log in the data dir")
            if time.perf_counter() - last > 30:
                done = ProductVector.objects.filter(model=model).count()
                log(f"{done:,} / {args.products:,} re-embedded, {time.perf_counter() - t0:.0f} s")
                last = time.perf_counter()
            time.sleep(1)
        seconds = time.perf_counter() - t0
        cpu = {k: tree_cpu([p]) - cpu0[k] for k, p in (("worker", worker.pid), ("postgres", pg))}
        load1 = os.getloadavg()[0]
    finally:
        worker.terminate()
        worker.wait(60)
    minutes = seconds / 60
    rate = args.products / seconds
    results["reembed"] = {
        "seconds": round(seconds, 1),
        "minutes": round(minutes, 2),
        "products_per_s": round(rate, 1),
        "queueing_s": round(queued, 1),
        "index_build_s": round(seconds - (build_seen - t0), 1) if build_seen is not None else None,
        "worker_cpu_ms_per_product": round(1000 * cpu["worker"] / args.products, 2),
        "postgres_cpu_ms_per_product": round(1000 * cpu["postgres"] / args.products, 2),
        "load_1min_start_end": [round(load0, 2), round(load1, 2)],
        "target_minutes": TARGET_MINUTES,
        "met": minutes <= TARGET_MINUTES,
    }
    rows = [
        {
            "what": f"re-embed under a new joint model (heads + GRU from stored features), {args.products:,} products",
            "minutes": round(minutes, 1),
            "products/s": round(rate, 1),
            "worker CPU ms/product": results["reembed"]["worker_cpu_ms_per_product"],
            "Postgres CPU ms/product": results["reembed"]["postgres_cpu_ms_per_product"],
        }
    ]
    raw = results.get("raw_encoder")
    if raw:
        raw_rate = round(raw["products/s"], 1)
        rows.append(
            {
                "what": f"raw full encoder (backbone + MiniLM), {RAW_PRODUCTS} demo products; "
                f"{args.products:,} at this rate",
                "minutes": round(args.products / raw_rate / 60, 1),
                "products/s": raw_rate,
            }
        )
    print(table(rows, title=f"Re-embedding {args.products:,} products (target ≤ {TARGET_MINUTES:.0f} min)"))
    write_result("reembed_scale", results, started)


if __name__ == "__main__":
    main()
