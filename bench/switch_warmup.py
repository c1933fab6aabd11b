"""Photo-search latency in the first minute after a model switch, with and without warm-up.

Starts gunicorn with runsite's command (searchsite.supervisor.gunicorn_argv: 2 sync workers)
on its own data dir with a slice of the demo catalogue embedded by the baseline model (EfficientNet-Lite0 + MiniLM), then
activates another model (the baseline asking for ResNet50 + MiniLM by default: other towers to
load; offline it falls back to Lite0 weights as baseline-efficientnet_lite0-fallback, still a
separate model that each web process must load).
The catalogue is re-embedded under it in this process while the site serves, the switch
is made, and two clients (one per web worker) send photo searches for a minute:

* ``warm``: web workers poll for a model being activated (ENCODER_WARM_POLL_SECONDS=2) and
  load and run it in the background before the switch, which waits until every live web
  worker has reported it warm (embeddings/warm.py, registry.wait_for_web_workers);
* ``cold``: no warm-up of the new model: a web worker warms the active model at start only
  and loads the new one on the first search that needs it; the switch does not wait.

    .venv/bin/python -m bench.switch_warmup [--products 300] [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import DEMO_CSV, ROOT, log, stats_ms, table, write_result
from bench.search_latency import free_port, http_post_image
from searchsite.supervisor import WEB_WORKERS, gunicorn_argv

if TYPE_CHECKING:  # Django is set up in main(), before the models are imported
    from embeddings.models import EmbeddingModel

# ENCODER_WARM_POLL_SECONDS of the web workers (cold: never polls again after start-up), and
# ENCODER_WARM_WAIT_SECONDS of the switch (cold: it does not wait for the web workers).
MODES = {"warm": ("2", 60.0), "cold": ("1000000", 0.0)}
TARGET = ["resnet50"]  # --target: the backbone of the model switched to


def post_photo(port: int, data: bytes) -> tuple[int, float, str]:
    """(status, seconds, model name or error) of one photo search through the API."""
    import json

    started = time.perf_counter()
    status, out = http_post_image(port, data, "q.png")
    took = time.perf_counter() - started
    model = json.loads(out).get("model", "") if status == 200 else out[:200].decode(errors="replace")
    return status, took, str(model)


def prepare_catalogue(products: int) -> list[Path]:
    """Import the first `products` demo rows, embedded by the baseline model, in this process."""
    import csv

    from catalog.ingest import run_import
    from catalog.models import ImportJob, Product
    from embeddings.registry import ensure_active_model
    from embeddings.tasks import embed_batch

    folder = Path(os.environ["VITRINE_DATA_DIR"]) / "catalogue"
    with open(DEMO_CSV, newline="") as src:
        rows = list(csv.DictReader(src))[:products]
    photos = [DEMO_CSV.parent / r["image"] for r in rows]
    model = ensure_active_model()
    if Product.objects.count() < products:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        with open(folder / "catalogue.csv", "w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        for r in rows:
            for ref in [r["image"], *filter(None, (r.get("images") or "").split("|"))]:  # with further photos
                (folder / ref).write_bytes((DEMO_CSV.parent / ref).read_bytes())
        job = ImportJob.objects.create(source_name="switch bench", csv_path=str(folder / "catalogue.csv"))
        run_import(job, queue_embeddings=False)
    ids = list(Product.objects.values_list("pk", flat=True))
    for start in range(0, len(ids), 64):
        embed_batch(ids[start : start + 64], model)
    return photos


def begin_activation(backbone: str) -> EmbeddingModel:
    from embeddings.models import EmbeddingModel
    from embeddings.registry import register_baseline

    new = register_baseline(backbone)  # no indexes: finish_activation_if_complete builds them
    new.status = EmbeddingModel.Status.ACTIVATING
    new.save(update_fields=["status"])
    return new


def reembed_and_switch(new: EmbeddingModel) -> tuple[float, float]:
    """Re-embed the catalogue under `new`, then switch as the embed task does after the last
    batch (registry.finish_activation_if_complete: waits for the web workers, switches, retires
    the old model); return the seconds of each."""
    from catalog.models import Product
    from embeddings.registry import finish_activation_if_complete
    from embeddings.tasks import embed_batch

    started = time.perf_counter()
    ids = list(Product.objects.values_list("pk", flat=True))
    for start in range(0, len(ids), 64):
        embed_batch(ids[start : start + 64], new)
    reembedded = time.perf_counter()
    if not finish_activation_if_complete(new.pk):
        raise RuntimeError(f"{new.name} was not activated")
    return reembedded - started, time.perf_counter() - reembedded


def run_mode(mode: str, photos: list[Path], seconds: float) -> dict:
    from django.conf import settings

    from embeddings.registry import ensure_active_model

    poll, settings.ENCODER_WARM_WAIT_SECONDS = MODES[mode]
    # Every mode measures the same switch: baseline-efficientnet_lite0 -> the baseline of --target.
    if ensure_active_model().name != "baseline-efficientnet_lite0":
        reembed_and_switch(begin_activation("efficientnet_lite0"))
    port = free_port()
    env = {**os.environ, "ENCODER_WARM_POLL_SECONDS": poll, "WARM_UP_ENCODER": "1"}
    web = subprocess.Popen(
        gunicorn_argv(f"127.0.0.1:{port}", WEB_WORKERS),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        data = photos[0].read_bytes()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if post_photo(port, data)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        time.sleep(20)  # both workers up and warm on the old model (start-up warm-up)
        for i in range(10):  # and each has served a photo search
            post_photo(port, photos[i % len(photos)].read_bytes())
        new = begin_activation(TARGET[0])
        log(f"[{mode}] activating {new.name} (re-embedding the catalogue) ...")
        reembed_s, switch_s = reembed_and_switch(new)
        switched = time.perf_counter()
        log(
            f"[{mode}] switched after {reembed_s:.0f}s of re-embedding and {switch_s:.1f}s waiting for the web "
            f"workers and switching; photo searches for {seconds:.0f}s"
        )
        samples: list[tuple[float, float, int, str]] = []

        def client(offset: int) -> None:
            i = offset
            while time.perf_counter() - switched < seconds:
                status, took, model = post_photo(port, photos[i % len(photos)].read_bytes())
                samples.append((time.perf_counter() - switched, took, status, model))
                i += 2

        threads = [threading.Thread(target=client, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        web.terminate()
        web.wait(30)
    samples.sort()
    ok = [s for s in samples if s[2] == 200]
    first10 = [s[1] for s in samples[:10]]
    return {
        "mode": mode,
        "switched_to": new.name,
        "reembed_s": round(reembed_s, 1),
        "switch_s": round(switch_s, 2),
        "requests": len(samples),
        "errors": len(samples) - len(ok),
        "served_by_new_model": sum(1 for s in ok if s[3] == new.name),
        "first_10_ms": [round(t * 1000) for t in first10],
        # When the slowest searches came (seconds after the switch): at the switch, or anywhere.
        "slowest_5_at_s_ms": [(round(s[0], 1), round(s[1] * 1000)) for s in sorted(ok, key=lambda s: -s[1])[:5]],
        **{f"{k}_ms": v for k, v in stats_ms([s[1] for s in ok]).items() if k != "n"},
        "max_ms": round(max(s[1] for s in ok) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--modes", default="cold,warm")
    parser.add_argument(
        "--target",
        default="resnet50",
        help="backbone switched to (resnet50 falls back to Lite0 weights offline: new towers all the same)",
    )
    args = parser.parse_args()
    TARGET[0] = args.target
    os.environ.setdefault("VITRINE_DATA_DIR", str(ROOT / "var" / "bench-switch"))
    os.environ.setdefault("EMBEDDINGS_IMAGE_BACKBONE", "efficientnet_lite0")
    os.environ.setdefault("REDIS_URL", "")
    from bench.common import setup_django

    setup_django()
    started = time.time()
    photos = prepare_catalogue(args.products)
    rows = [run_mode(mode, photos, args.seconds) for mode in args.modes.split(",")]
    columns = ["mode", "switched_to", "requests", "errors", "served_by_new_model", "p50_ms", "p99_ms", "max_ms"]
    print(table(rows, [c for c in columns if c in rows[0]], title="photo search, first minute after a model switch"))
    for row in rows:
        print(f"{row['mode']}: first 10 after the switch (ms): {row['first_10_ms']}")
    write_result("switch_warmup", {"products": args.products, "seconds": args.seconds, "rows": rows}, started)


if __name__ == "__main__":
    main()
