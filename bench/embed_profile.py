"""Where does the time of one embedding task go? Profiles embed_batch in a forked child.

Celery's prefork pool runs tasks in a child forked from the worker's main process, which
has already imported torch. This forks the same way and times each stage of
``embeddings.tasks.embed_batch`` for a batch of EMBED_BATCH_SIZE demo products:
DB reads, image file read + decode, preprocessing, image forward, text forward
(MiniLM for the baseline model), and the vector upsert.

    .venv/bin/python -m bench.embed_profile
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import bench_env, log, setup_django, table, write_result


def profile_batch(product_ids: list[int], model_id: int, repeats: int) -> dict:
    import torch

    from catalog.models import Product
    from embeddings.models import EmbeddingModel, ProductVector
    from embeddings.registry import encoder_for
    from ml.transforms import open_image, to_model_input

    out: dict = {"pid": os.getpid(), "torch_threads_in_child": torch.get_num_threads()}
    model = EmbeddingModel.objects.get(pk=model_id)
    t = time.perf_counter()
    enc = encoder_for(model)
    out["encoder_load_s"] = round(time.perf_counter() - t, 3)
    out.update(backbone=enc.backbone, bf16=enc.bf16, text_bf16=enc.text_bf16, image_size=enc.image_size)
    runs = []
    for _ in range(repeats):
        r: dict[str, float] = {}
        t = time.perf_counter()
        list(
            ProductVector.objects.filter(model=model, product_id__in=product_ids).values_list(
                "product_id", "content_hash"
            )
        )
        products = list(Product.objects.filter(pk__in=product_ids))
        r["db_read"] = time.perf_counter() - t
        t = time.perf_counter()
        images = []
        for p in products:
            with p.image.open("rb") as handle:
                images.append(open_image(handle.read()))
        r["read_decode"] = time.perf_counter() - t
        t = time.perf_counter()
        x = to_model_input(images, enc.image_size, enc.mean, enc.std)
        r["preprocess"] = time.perf_counter() - t
        t = time.perf_counter()
        image_vecs = enc.encode_images(images)  # includes preprocessing again
        r["encode_images"] = time.perf_counter() - t
        r["image_forward_only"] = r["encode_images"] - r["preprocess"]
        t = time.perf_counter()
        text_vecs = enc.encode_texts([p.text_for_embedding for p in products])
        r["encode_texts"] = time.perf_counter() - t
        t = time.perf_counter()
        rows = [
            ProductVector(
                product=p,
                model=model,
                image_vec=iv.tolist(),
                text_vec=tv.tolist(),
                content_hash=p.content_hash,
                category=p.category,
                price=p.price,
            )
            for p, iv, tv in zip(products, image_vecs, text_vecs, strict=True)
        ]
        ProductVector.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["product", "model"],
            update_fields=["image_vec", "text_vec", "content_hash", "category", "price", "updated_at"],
        )
        r["db_write"] = time.perf_counter() - t
        r["total"] = r["db_read"] + r["read_decode"] + r["encode_images"] + r["encode_texts"] + r["db_write"]
        runs.append(r)
        del x
    out["runs"] = runs
    return out


def in_forked_child(fn: Callable[..., Any], *args: Any, timeout: float = 120) -> Any:
    """Run fn in a fork of this process (as billiard's prefork pool does); return its JSON result.

    A child that produces nothing within `timeout` seconds is killed and reported as hung.
    """
    import select
    import signal

    from django.db import connections

    connections.close_all()  # a forked child must not share the parent's socket
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            payload = json.dumps(fn(*args))
        except BaseException as exc:  # report, never return into the parent's code
            payload = json.dumps({"error": repr(exc)})
        with os.fdopen(write_fd, "w") as w:
            w.write(payload)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as r:
        ready, _, _ = select.select([r], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"error": f"child hung (no result after {timeout:.0f} s; killed)"}
        data = r.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def main() -> None:
    started = time.time()
    bench_env()
    setup_django()
    import torch
    from django.conf import settings

    from bench.demo_catalogue import run_setup_subprocess
    from catalog.models import Product

    model = run_setup_subprocess(embed=False)
    ids = sorted(Product.objects.values_list("pk", flat=True))[: settings.EMBED_BATCH_SIZE]
    parent_threads = torch.get_num_threads()
    # The worker's main process only imports torch (catalog.tasks -> ml.transforms);
    # it never runs an op. Try both: a parent that ran a parallel op before forking too.
    log(f"parent torch threads {parent_threads}; profiling batch of {len(ids)} in a fresh forked child")
    cold = in_forked_child(profile_batch, ids, model.pk, 3)
    torch.ones(256, 256) @ torch.ones(256, 256)
    hot = in_forked_child(profile_batch, ids, model.pk, 3, timeout=60)
    results = {"batch": len(ids), "parent_threads": parent_threads, "fork_parent_idle": cold, "fork_parent_ran_op": hot}
    rows = []
    for label, res in (("fork, parent idle", cold), ("fork, parent ran an op", hot)):
        if "error" in res:
            print(label, res["error"], file=sys.stderr)
            rows.append({"case": label, "run": "-", "threads": res["error"]})
            continue
        for i, run in enumerate(res["runs"]):
            rows.append(
                {
                    "case": label,
                    "run": i + 1,
                    "threads": res["torch_threads_in_child"],
                    "bf16": res["bf16"],
                    **{k: round(v * 1000, 1) for k, v in run.items()},
                    "products/s": round(len(ids) / run["total"], 1),
                }
            )
    log(f"backbone {cold.get('backbone')}, encoder load {cold.get('encoder_load_s')} s")
    table(rows, title=f"embed_batch stages in ms (batch of {len(ids)}, model {model.name})")
    write_result("embed_profile", results, started)


if __name__ == "__main__":
    main()
