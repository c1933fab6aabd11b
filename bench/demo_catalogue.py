"""Load the demo catalogue (2,500 products) into the benchmark database, with vectors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.common import DEMO_CSV, log

if TYPE_CHECKING:
    from embeddings.models import EmbeddingModel


def ensure_demo_catalogue(embed: bool = True) -> int:
    """Import demo/catalogue.csv if needed and embed missing products in this process.

    Returns the number of products. Setup only: nothing here is timed.
    """
    from catalog.ingest import run_import
    from catalog.models import ImportJob, Product
    from embeddings.dispatch import missing_ids
    from embeddings.registry import ensure_active_model
    from embeddings.tasks import embed_batch

    model = ensure_active_model()
    if Product.objects.count() < 2500:
        log("importing the demo catalogue (setup, not timed)")
        job = ImportJob.objects.create(source_name=str(DEMO_CSV), csv_path=str(DEMO_CSV))
        run_import(job, queue_embeddings=False)
    if embed:
        ids = sorted(missing_ids(model))
        if ids:
            log(f"embedding {len(ids)} products in-process (setup, not timed)")
        for start in range(0, len(ids), 256):
            embed_batch(ids[start : start + 256], model)
    return Product.objects.count()


def run_setup_subprocess(embed: bool) -> EmbeddingModel:  # Django is set up by the caller
    """Run the setup in a child interpreter so this process never loads a model; return
    the active model it registered.

    A process that is about to fork workers must not have used torch's OpenMP pool
    (see bench/embed_profile.py): the forked child can deadlock.
    """
    import subprocess
    import sys

    from bench.common import ROOT, bench_env

    args = [sys.executable, "-m", "bench.demo_catalogue"] + ([] if embed else ["--no-embed"])
    subprocess.run(args, cwd=ROOT, env=bench_env(), check=True)
    from embeddings.models import EmbeddingModel

    model = EmbeddingModel.active()
    if model is None:
        raise RuntimeError("the demo set-up left no active embedding model")
    return model


if __name__ == "__main__":
    import sys

    from bench.common import setup_django

    setup_django()
    print(f"demo catalogue: {ensure_demo_catalogue(embed='--no-embed' not in sys.argv)} products")
