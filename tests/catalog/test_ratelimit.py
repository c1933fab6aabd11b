"""Per-client rate limits on the public pages and API: a 429 that says when to retry.

Limits here are per hour: a per-minute window could roll over between two requests of a test."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from catalog.ratelimit import describe
from searchsite.settings import envrate
from tests.conftest import png_bytes


@pytest.fixture
def fresh_counters(settings):
    """Counters of this test's own (test runs may share one Redis database)."""
    caches = {name: dict(config) for name, config in settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"ratelimit-test-{uuid.uuid4().hex}"
    settings.CACHES = caches
    return settings


def test_the_api_answers_429_with_retry_after_past_the_limit(db, client, fresh_counters):
    fresh_counters.SEARCH_RATE_LIMIT = "3/h"
    for _ in range(3):
        assert client.get("/api/categories").status_code == 200
    refused = client.get("/api/categories")
    assert refused.status_code == 429
    retry_after = int(refused["Retry-After"])
    assert 1 <= retry_after <= 3600
    body = refused.json()
    assert body["retry_after"] == retry_after
    assert body["error"].startswith("Too many requests: the limit is 3 per hour per client. Try again in")
    # The budget is shared by the search endpoints: the search page is refused as well.
    page = client.get("/")
    assert page.status_code == 429 and page["Retry-After"]
    html = page.content.decode()
    assert "<html" in html and "Too many requests: the limit is 3 per hour per client." in html


def test_as_you_type_fragments_get_a_fragment(db, client, fresh_counters):
    fresh_counters.SEARCH_RATE_LIMIT = "1/h"
    client.get("/", {"q": "bag", "fragment": 1})
    refused = client.get("/", {"q": "bags", "fragment": 1})
    html = refused.content.decode()
    assert refused.status_code == 429
    assert "<html" not in html and 'role="alert"' in html and "Too many requests" in html


def test_each_client_has_its_own_budget(db, fresh_counters):
    fresh_counters.SEARCH_RATE_LIMIT = "2/h"
    first, second = Client(REMOTE_ADDR="203.0.113.7"), Client(REMOTE_ADDR="198.51.100.20")
    assert [first.get("/api/categories").status_code for _ in range(3)] == [200, 200, 429]
    assert second.get("/api/categories").status_code == 200


def test_a_forged_forwarded_for_does_not_escape_the_limit(db, client, fresh_counters):
    fresh_counters.SEARCH_RATE_LIMIT = "2/h"
    codes = [client.get("/api/categories", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").status_code for n in range(3)]
    assert codes == [200, 200, 429]


def test_behind_a_trusted_proxy_clients_are_told_apart(db, fresh_counters):
    fresh_counters.SEARCH_RATE_LIMIT = "2/h"
    fresh_counters.TRUSTED_PROXY_COUNT = 1
    proxy = Client(REMOTE_ADDR="10.0.0.2")
    shopper = [proxy.get("/api/categories", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code for _ in range(3)]
    assert shopper == [200, 200, 429]
    assert proxy.get("/api/categories", HTTP_X_FORWARDED_FOR="198.51.100.20").status_code == 200


def test_photo_uploads_have_their_own_lower_limit(db, client, fresh_counters):
    fresh_counters.SEARCH_RATE_LIMIT = "100/h"
    fresh_counters.PHOTO_SEARCH_RATE_LIMIT = "1/h"
    # The first upload is counted whatever becomes of it (here: no model to search with).
    client.post("/api/search/image", {"image": _upload()})
    refused = client.post("/api/search/image", {"image": _upload()})
    assert refused.status_code == 429 and "1 per hour" in refused.json()["error"]
    page_upload = client.post("/", {"image": _upload()})
    assert page_upload.status_code == 429 and "Too many requests" in page_upload.content.decode()
    # ... and text searches are not held back by it.
    assert client.get("/api/categories").status_code == 200


def test_an_empty_limit_switches_it_off(db, client, fresh_counters):
    fresh_counters.SEARCH_RATE_LIMIT = ""
    assert {client.get("/api/categories").status_code for _ in range(5)} == {200}


def test_the_embedded_default_counts_in_a_file_cache(db, client, settings, tmp_path):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    settings.SEARCH_RATE_LIMIT = "2/h"
    assert [client.get("/api/categories").status_code for _ in range(3)] == [200, 200, 429]


def test_search_keeps_answering_when_the_cache_is_down(db, client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "searchsite.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    settings.SEARCH_RATE_LIMIT = "1/h"
    assert [client.get("/api/categories").status_code for _ in range(2)] == [200, 200]


def test_rates_are_checked_when_the_settings_load(monkeypatch):
    monkeypatch.setenv("SEARCH_RATE_LIMIT", "lots")
    with pytest.raises(ValueError, match="SEARCH_RATE_LIMIT must look like 120/m"):
        envrate("SEARCH_RATE_LIMIT", "120/m")
    monkeypatch.setenv("SEARCH_RATE_LIMIT", "10/5m")
    assert envrate("SEARCH_RATE_LIMIT", "120/m") == "10/5m"
    monkeypatch.setenv("SEARCH_RATE_LIMIT", "")
    assert envrate("SEARCH_RATE_LIMIT", "120/m") == ""


def test_rates_read_as_words():
    assert describe("120/m") == "120 per minute"
    assert describe("10/5m") == "10 per 5 minutes"
    assert describe("1000/d") == "1000 per day"


def _upload():
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("photo.png", png_bytes(), content_type="image/png")


def test_the_api_schema_documents_the_429(client):
    paths = client.get("/api/openapi.json").json()["paths"]
    for path, method in [("/api/search", "get"), ("/api/search/image", "post"), ("/api/categories", "get")]:
        answer = paths[path][method]["responses"]["429"]
        assert "Retry-After" in answer["headers"]
