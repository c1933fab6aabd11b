"""Shared test set-up: real embedded Postgres + pgvector, a real (small, offline) encoder.

Unit tests run Celery tasks eagerly; tests/integration runs a real worker over Redis.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo"
SMALL_CSV = DEMO / "fixtures" / "small" / "catalogue.csv"
BAD_CSV = DEMO / "fixtures" / "bad" / "catalogue.csv"
OUTPUT = REPO / "test-output"


@pytest.fixture(autouse=True)
def _media_and_eager(settings, tmp_path_factory):
    from searchsite.celery import app

    settings.MEDIA_ROOT = tmp_path_factory.mktemp("media")
    settings.DATA_DIR = tmp_path_factory.mktemp("data")
    settings.MODELS_DIR = settings.DATA_DIR / "models"
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = True


@pytest.fixture(autouse=True)
def _fresh_search_caches(settings):
    """Each test starts with empty per-process search caches (a rolled-back test's catalogue
    version numbers come back in the next test), and without the caches' shared level in
    Redis, which would keep them across tests (tests/catalog/test_search_cache.py turns it on
    under a key prefix of its own)."""
    from catalog import search_cache

    settings.SEARCH_SHARED_CACHE = False
    search_cache.clear_all()
    yield
    search_cache.clear_all()


@pytest.fixture
def copy_catalogue(tmp_path):
    """Copy a fixture catalogue folder so a test may edit it."""

    def copy(src_csv: Path = SMALL_CSV) -> Path:
        dest = tmp_path / src_csv.parent.name
        shutil.copytree(src_csv.parent, dest)
        return dest / src_csv.name

    return copy


@pytest.fixture
def small_catalogue(db, django_capture_on_commit_callbacks):
    """The 40-product fixture catalogue, imported and embedded with the baseline model."""
    from catalog.ingest import run_import
    from catalog.models import ImportJob
    from embeddings.registry import ensure_active_model

    ensure_active_model()
    job = ImportJob.objects.create(source_name="small", csv_path=str(SMALL_CSV))
    with django_capture_on_commit_callbacks(execute=True):
        run_import(job)
    return job


def png_bytes(color=(200, 30, 30), size=(32, 32), fmt="PNG") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()
