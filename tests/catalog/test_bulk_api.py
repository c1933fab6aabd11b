"""The bulk API: POST /api/imports and GET /api/imports/<id> with staff API tokens.

Uploads go through the admin's import (catalog.uploads.queue_import -> the import_catalogue
task -> prepare_upload/run_import), with Celery eager as in tests/catalog/test_admin.py.
"""

from __future__ import annotations

import io
import time

import hypothesis
import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck
from django.urls import reverse

from catalog import openapi
from catalog.models import ApiToken, ImportJob, Product
from catalog.tokens import create_token, hash_token
from tests.catalog.test_admin import zipped
from embeddings.registry import ensure_active_model
from tests.catalog.test_openapi import APP, CHECKS, EXAMPLES, same_connection  # noqa: F401  (fixture)
from tests.conftest import BAD_CSV, SMALL_CSV
from tests.integration.test_worker import Worker, broker  # noqa: F401  (fixture: Redis, eager off)


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("ops", "ops@example.com", "pw", is_staff=True)


@pytest.fixture
def token(staff) -> str:
    return create_token(staff, "tests")[1]


def auth(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def named(data: bytes, name: str) -> io.BytesIO:
    upload = io.BytesIO(data)
    upload.name = name
    return upload


def poll(client: Client, url: str, token: str, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        response = client.get(url, **auth(token))
        assert response.status_code == 200, response.content
        state = response.json()
        if state["status"] in ("done", "failed") or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def test_it_imports_the_demo_fixture_and_polls_until_done(client, token, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/imports", {"file": zipped(SMALL_CSV.parent)}, **auth(token))
    assert response.status_code == 202, response.content
    body = response.json()
    job = ImportJob.objects.get()
    assert body["id"] == job.pk and body["url"] == f"http://testserver/api/imports/{job.pk}"
    assert response["Location"] == f"/api/imports/{job.pk}"
    state = poll(client, body["url"], token)
    assert state["status"] == "done", state
    assert (state["total_rows"], state["created"], state["failed"], state["percent"]) == (40, 40, 0, 100)
    assert state["to_embed"] == state["embedded"] == 40 and Product.objects.count() == 40
    assert state["source"] == "shop.zip" and state["finished_at"]
    # the admin's import: its folder under DATA_DIR/imports, the CSV unzipped by prepare_upload
    assert "/imports/" in job.csv_path and job.csv_path.endswith("/unzipped/catalogue.csv")
    # the same file again changes nothing
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post("/api/imports", {"file": zipped(SMALL_CSV.parent)}, **auth(token)).json()
    assert poll(client, again["url"], token)["unchanged"] == 40


def test_bad_rows_are_listed_with_their_row_numbers(client, token, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        url = client.post("/api/imports", {"file": zipped(BAD_CSV.parent)}, **auth(token)).json()["url"]
    state = poll(client, url, token)
    assert state["failed"] == 10 and state["duplicates"] == 1
    assert {e["row"] for e in state["errors"]} >= {1, 2, 4, 9} and all(e["error"] for e in state["errors"])


def test_a_file_that_cannot_be_read_fails_as_a_whole(client, token, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        url = client.post(
            "/api/imports", {"file": named(b"sku,title,colour\nx,y,red\n", "shop.csv")}, **auth(token)
        ).json()["url"]
    state = poll(client, url, token)
    assert state["status"] == "failed" and "missing" in state["error_message"] and Product.objects.count() == 0


@pytest.mark.parametrize(
    "header, status, needle",
    [
        (None, 401, "authentication required"),
        ("Token abc", 401, "must be 'Bearer <token>'"),
        ("Bearer ", 401, "must be 'Bearer <token>'"),
        ("Bearer vit_not-a-real-token", 401, "unknown API token"),
    ],
)
def test_requests_without_a_valid_token_are_refused(client, db, header, status, needle):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    for response in (
        client.post("/api/imports", {"file": named(b"x", "a.csv")}, **extra),
        client.get("/api/imports/1", **extra),
    ):
        assert response.status_code == status and needle in response.json()["error"]
        assert response["WWW-Authenticate"] == 'Bearer realm="vitrine"'
    assert not ImportJob.objects.exists()


def test_revoked_tokens_and_non_staff_users_are_refused(client, staff, token, django_user_model):
    from catalog.tokens import revoke

    revoke(ApiToken.objects.all())
    response = client.get("/api/imports/1", **auth(token))
    assert response.status_code == 401 and "revoked" in response.json()["error"]
    shopper = django_user_model.objects.create_user("shopper", "s@example.com", "pw")
    response = client.post("/api/imports", {"file": named(b"x", "a.csv")}, **auth(create_token(shopper, "x")[1]))
    assert response.status_code == 403 and "not staff" in response.json()["error"]
    staff.is_active = False
    staff.save()
    assert client.get("/api/imports/1", **auth(create_token(staff, "y")[1])).status_code == 401


def test_a_logged_in_staff_session_is_not_enough(client, staff):
    # The endpoints read only the token, never the session cookie: no ambient credential to forge.
    client.force_login(staff)
    assert client.post("/api/imports", {"file": named(b"x", "a.csv")}).status_code == 401
    assert client.get("/api/imports/1").status_code == 401


def test_token_requests_need_no_csrf_token(token, django_capture_on_commit_callbacks):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/api/imports", {"file": named(b"sku,title,description,category,price,image\n", "a.csv")}, **auth(token)
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    "data, content_type, status, needle",
    [
        ({"file": named(b"%PDF-1.4", "notes.pdf")}, None, 400, "Upload a .csv or a .zip"),
        ({"other": named(b"x", "a.csv")}, None, 400, "field 'file' is required"),
        ({}, None, 400, "field 'file' is required"),
        ("sku,title\n", "text/csv", 400, "multipart/form-data"),
        ("--x\r\nbroken", "multipart/form-data", 400, "not valid multipart"),
    ],
)
def test_bad_uploads_are_400s_that_say_why(client, token, data, content_type, status, needle):
    kwargs = {"content_type": content_type} if content_type else {}
    response = client.post("/api/imports", data, **kwargs, **auth(token))
    assert response.status_code == status and needle in response.json()["error"], response.content
    assert not ImportJob.objects.exists()


def test_uploads_over_the_admins_limit_are_413(client, token, settings):
    settings.MAX_IMPORT_BYTES = 100
    response = client.post("/api/imports", {"file": named(b"x" * 101, "big.csv")}, **auth(token))
    assert response.status_code == 413 and "limit is 100" in response.json()["error"]
    settings.MAX_IMPORT_BYTES = 10
    response = client.post("/api/imports", {"file": named(b"x" * 100_000, "big.csv")}, **auth(token))
    assert response.status_code == 413 and "imports up to 10" in response.json()["error"]
    assert not ImportJob.objects.exists()


@pytest.mark.parametrize("job_id", ["999999", "0", "abc", "1/2", "²", "9" * 40])
def test_unknown_jobs_are_json_404s(client, token, job_id):
    response = client.get(f"/api/imports/{job_id}", **auth(token))
    assert response.status_code == 404 and "no import" in response.json()["error"]


def test_tokens_are_made_in_the_admin_shown_once_and_revocable(client, django_user_model, staff):
    admin = django_user_model.objects.create_superuser("alice", "alice@example.com", "pw")
    client.force_login(admin)
    response = client.post(reverse("admin:catalog_apitoken_add"), {"user": staff.pk, "name": "ERP"}, follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    token = text.split('id="new-api-token">')[1].split("<")[0]
    row = ApiToken.objects.get()
    assert token.startswith("vit_") and row.key_hash == hash_token(token) and token not in str(row.__dict__)
    assert row.prefix == token[:10] and row.last_used_at is None
    # shown once: the list and the token's own page show only its start
    for url in (reverse("admin:catalog_apitoken_changelist"), reverse("admin:catalog_apitoken_change", args=[row.pk])):
        page = client.get(url).content.decode()
        assert token not in page and row.prefix in page
    api = Client()
    assert api.get("/api/imports/1", **auth(token)).status_code == 404
    row.refresh_from_db()
    assert row.last_used_at is not None
    response = client.post(
        reverse("admin:catalog_apitoken_changelist"),
        {"action": "revoke_tokens", "_selected_action": [row.pk]},
        follow=True,
    )
    assert b"1 token(s) revoked" in response.content
    assert api.get("/api/imports/1", **auth(token)).status_code == 401


def test_the_admin_refuses_tokens_for_non_staff_users(client, django_user_model):
    admin = django_user_model.objects.create_superuser("alice", "alice@example.com", "pw")
    shopper = django_user_model.objects.create_user("shopper", "s@example.com", "pw")
    client.force_login(admin)
    response = client.post(reverse("admin:catalog_apitoken_add"), {"user": shopper.pk, "name": "x"})
    assert response.status_code == 200 and b"Only staff users" in response.content
    assert not ApiToken.objects.exists()


# Schemathesis against the imports operations with a valid staff token (tests/catalog/test_openapi.py
# fuzzes every operation without one): any file, any body, never a 5xx, always as documented.
FUZZ_SCHEMA = schemathesis.openapi.from_dict(openapi.schema()).include(path_regex="^/api/imports")


@pytest.fixture
def fuzz_token(db, same_connection, django_user_model) -> str:
    user = django_user_model.objects.create_user("fuzz", "f@example.com", "pw", is_staff=True)
    return create_token(user, "fuzz")[1]


@FUZZ_SCHEMA.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_the_imports_api_answers_staff_as_documented(case, fuzz_token):
    # an explicit header: schemathesis would otherwise send the scheme's made-up tokens
    case.call_and_validate(app=APP, checks=CHECKS, headers={"Authorization": f"Bearer {fuzz_token}"})


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_an_api_import(broker, tmp_path, token):
    """The upload is queued over Redis to a separate `celery worker` process, as in production."""
    client = Client()
    ensure_active_model()  # before the worker starts, as runsite's first migrate does
    worker = Worker(tmp_path / "worker.log")
    try:
        response = client.post("/api/imports", {"file": zipped(SMALL_CSV.parent)}, **auth(token))
        assert response.status_code == 202, response.content
        state = poll(client, response.json()["url"], token, seconds=300)
    finally:
        worker.stop()
    assert state["status"] == "done", (state, worker.text()[-3000:])
    assert (state["created"], state["embedded"]) == (40, 40) and "import_catalogue" in worker.text()
