"""Browser tests: Debian chromium driven by Playwright against pytest-django's live_server.

The live server runs in a thread of this process and sees only committed rows, so the
catalogue is imported through transactional_db (live_server requests it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import OUTPUT, SMALL_CSV

# Playwright's sync API runs an event loop in this thread; Django would otherwise refuse
# the fixtures' database access as "called from an async context".
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = OUTPUT / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
]


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must run the browser tests")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); set CI=1 to make this a failure")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def shop(live_server, settings, tmp_path, django_capture_on_commit_callbacks):
    """The 40-product fixture catalogue, committed, with its photos served by the live server."""
    from django.urls import get_resolver
    from django.views.static import serve

    from catalog.ingest import run_import
    from catalog.models import ImportJob
    from embeddings.registry import ensure_active_model

    media = tmp_path / "media"
    media.mkdir()
    settings.MEDIA_ROOT = media
    # searchsite/urls.py bound /media/ to MEDIA_ROOT when it was imported; point it here.
    patterns = [p for p in get_resolver().url_patterns if getattr(p, "callback", None) is serve]
    saved = [dict(p.default_args) for p in patterns]
    for p in patterns:
        p.default_args["document_root"] = str(media)
    ensure_active_model()
    job = ImportJob.objects.create(source_name="small", csv_path=str(SMALL_CSV))
    with django_capture_on_commit_callbacks(execute=True):
        run_import(job)
    yield live_server.url
    for p, args in zip(patterns, saved, strict=True):
        p.default_args.clear()
        p.default_args.update(args)
    shutil.rmtree(media, ignore_errors=True)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
