"""Image URLs in a catalogue, against a real HTTP server on loopback (allowed for the test)."""
from __future__ import annotations

import functools
import http.server
import threading

import pytest

from catalog.fetch import FetchError, read_local, read_url
from catalog.ingest import run_import
from catalog.models import ImportJob, Product
from embeddings.registry import ensure_active_model
from tests.conftest import SMALL_CSV

IMAGES = SMALL_CSV.parent / "images"


@pytest.fixture(scope="module")
def image_server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(IMAGES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_urls_are_downloaded_when_allowed(db, settings, tmp_path, image_server, django_capture_on_commit_callbacks):
    settings.INGEST_ALLOW_PRIVATE_URLS = True
    ensure_active_model()
    names = sorted(p.name for p in IMAGES.iterdir())[:2]
    path = tmp_path / "urls.csv"
    path.write_text(
        "sku,title,description,category,price,image\n"
        f"U1,Remote one,,Bags,10,{image_server}/{names[0]}\n"
        f"U2,Remote two,,Bags,12.5,{image_server}/{names[1]}\n"
        f"U3,Missing,,Bags,1,{image_server}/nope.png\n"
    )
    job = ImportJob.objects.create(source_name="urls", csv_path=str(path))
    with django_capture_on_commit_callbacks(execute=True):
        job = run_import(job)
    assert (job.created, job.failed) == (2, 1)
    assert job.errors[0]["row"] == 3 and "HTTP 404" in job.errors[0]["error"]
    stored = Product.objects.get(sku="U1")
    assert stored.image.read() == (IMAGES / names[0]).read_bytes()


def test_download_size_is_capped(image_server):
    name = sorted(p.name for p in IMAGES.iterdir())[0]
    with pytest.raises(FetchError, match="larger than 10 bytes|too large"):
        read_url(f"{image_server}/{name}", max_bytes=10, timeout=5, allow_private=True)


def test_loopback_is_refused_by_default(image_server):
    with pytest.raises(FetchError, match="non-public address"):
        read_url(f"{image_server}/x.png", max_bytes=1000, timeout=5)


@pytest.mark.parametrize("ref", ["../x.png", "/etc/passwd", "images/../../x.png", "C:\\x.png"])
def test_local_paths_may_not_leave_the_folder(ref):
    with pytest.raises(FetchError):
        read_local(ref, IMAGES, 10_000_000)
