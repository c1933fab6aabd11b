"""A real Celery worker over real Redis, embedding into the real (test) database.

The worker is a separate process started here; it reaches the pytest database through
DATABASE_URL and the broker through REDIS_URL (database 15 of the machine's Redis).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from catalog.ingest import run_import
from catalog.models import ImportJob, Product
from embeddings.models import ProductVector
from embeddings.registry import ensure_active_model
from tests.conftest import REPO, SMALL_CSV

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def database_url() -> str:
    params = connection.settings_dict
    host = params["HOST"]
    url = f"postgresql://{params['USER']}:{params['PASSWORD']}@/{params['NAME']}?host={host}"
    if params.get("PORT"):
        url = f"postgresql://{params['USER']}:{params['PASSWORD']}@{host}:{params['PORT']}/{params['NAME']}"
    return url


@pytest.fixture
def broker():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"the integration tests need Redis at {settings.CELERY_BROKER_URL}: {exc}")
    client.flushdb()
    from searchsite.celery import app

    app.conf.task_always_eager = False
    yield client
    client.flushdb()


class Worker:
    def __init__(self, log: Path) -> None:
        self.log = log
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "searchsite.test_settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.CELERY_BROKER_URL,
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "VITRINE_DATA_DIR": str(settings.DATA_DIR),
            "CELERY_VISIBILITY_TIMEOUT": "10",
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "searchsite",
                "worker",
                "-Q",
                "prepare,embed",
                "-c",
                "1",
                "-n",
                f"itest-{time.monotonic_ns()}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            cwd=REPO,
            env=env,
            stdout=open(log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)  # the main process and its pool children
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(condition, timeout: float, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; worker log:\n{worker.text()[-3000:]}")


def current_vectors() -> int:
    return (
        ProductVector.objects.filter(content_hash__in=Product.objects.values("content_hash"))
        .values("product")
        .distinct()
        .count()
    )


def import_small() -> ImportJob:
    ensure_active_model()
    job = ImportJob.objects.create(source_name="small", csv_path=str(SMALL_CSV))
    return run_import(job)  # autocommit: batches are queued to Redis as each chunk commits


def test_worker_embeds_an_import(broker, tmp_path):
    worker = Worker(tmp_path / "worker.log")
    try:
        job = import_small()
        assert job.created == 40
        wait_for(lambda: current_vectors() == 40, 240, "40 products embedded", worker)
    finally:
        worker.stop()
    assert ProductVector.objects.count() == 40


def test_worker_embeds_every_photo_of_a_product(broker, tmp_path):
    """Further photos (the CSV's `images`) go through the same embedding batches on the worker."""
    import shutil

    from embeddings.models import PhotoVector

    folder = tmp_path / "shop"
    shutil.copytree(SMALL_CSV.parent / "images", folder / "images")
    (folder / "shop.csv").write_text(
        "sku,title,description,category,price,image,images\n"
        "W-1,Three photos,,Bags,5,images/SM-010.png,images/SM-014.png|images/SM-005.png\n"
        "W-2,One photo,,Bags,5,images/SM-016.png,\n"
    )
    ensure_active_model()
    worker = Worker(tmp_path / "worker.log")
    try:
        job = run_import(ImportJob.objects.create(source_name="photos", csv_path=str(folder / "shop.csv")))
        assert job.created == 2, job.errors
        wait_for(
            lambda: current_vectors() == 2 and PhotoVector.objects.count() == 2,
            240,
            "2 products and 2 further photos embedded",
            worker,
        )
    finally:
        worker.stop()
    assert set(PhotoVector.objects.values_list("photo__position", flat=True)) == {1, 2}
    assert set(PhotoVector.objects.values_list("product__sku", flat=True)) == {"W-1"}


def test_worker_killed_mid_batch_loses_nothing(broker, tmp_path):
    job = import_small()  # 40 products -> 3 batches of 16 wait in Redis; no worker yet
    assert job.created == 40 and current_vectors() == 0
    first = Worker(tmp_path / "first.log")
    # Kill the moment the first batch is taken: it is unacknowledged (acks_late).
    wait_for(lambda: "embed_products" in first.text() and "received" in first.text(), 120, "a batch received", first)
    first.kill()
    done_at_kill = current_vectors()
    assert done_at_kill < 40, "the worker finished everything before it was killed; the test proves nothing"
    second = Worker(tmp_path / "second.log")
    try:
        # The killed batch comes back after the visibility timeout (10 s here).
        wait_for(lambda: current_vectors() == 40, 300, "all 40 products embedded after the kill", second)
    finally:
        second.stop()
    # Idempotent writes: exactly one current vector per product, none duplicated.
    assert ProductVector.objects.count() == 40
    assert set(ProductVector.objects.values_list("product__sku", flat=True)) == set(
        Product.objects.values_list("sku", flat=True)
    )
