"""The bad-input corpus (demo/fixtures/bad_inputs/cases.json): CSV files and rows, images,
image URLs and API parameters, each with the answer Vitrine must give. Never a 500."""

from __future__ import annotations

import http.server
import ipaddress
import json
import shutil
import socket
import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.fetch import FetchError, read_url
from catalog.ingest import run_import
from catalog.models import ImportJob, Product
from tests.catalog.test_search import catalogue  # noqa: F401  (module fixture)
from tests.conftest import DEMO

CORPUS = DEMO / "fixtures" / "bad_inputs"
CASES = json.loads((CORPUS / "cases.json").read_text(encoding="utf-8"))["cases"]


def cases(kind: str) -> list:
    return [pytest.param(c, id=c["id"]) for c in CASES if c["kind"] == kind]


def matches(message: str, expected: str) -> bool:
    """expected: a phrase, or phrases separated by | of which one must appear."""
    return any(part in message for part in expected.split("|"))


def test_the_corpus_covers_every_kind():
    kinds = {c["kind"] for c in CASES}
    assert kinds == {"csv", "image", "url", "api"}
    assert len({c["id"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", cases("csv"))
def test_csv(case, db, tmp_path, django_capture_on_commit_callbacks):
    from embeddings.registry import ensure_active_model

    ensure_active_model()
    shutil.copytree(CORPUS / "images", tmp_path / "images")
    path = tmp_path / "catalogue.csv"
    if "bytes_hex" in case:
        path.write_bytes(bytes.fromhex(case["bytes_hex"]))
    else:
        path.write_bytes(case["text"].encode(case["encoding"]))
    expect = case["expect"]
    with django_capture_on_commit_callbacks(execute=True):
        job = run_import(ImportJob.objects.create(source_name=case["id"], csv_path=str(path)))
    if "file_error" in expect:
        assert job.status == ImportJob.Status.FAILED and matches(job.error_message, expect["file_error"]), (
            job.error_message
        )
        assert Product.objects.count() == 0
        return
    assert job.status != ImportJob.Status.FAILED, job.error_message
    errors = {str(e["row"]): e["error"] for e in job.errors}
    assert set(errors) == set(expect.get("rows", {})), errors
    for row, phrase in expect.get("rows", {}).items():
        assert matches(errors[row], phrase), (row, errors[row])
    assert job.created == expect["created"] and job.duplicates == expect.get("duplicates", 0)
    assert job.created + job.updated + job.unchanged + job.failed + job.duplicates == job.total_rows
    for phrase, note in zip(expect.get("notes", []), job.notes, strict=True):
        assert phrase in note
    for sku, price in expect.get("prices", {}).items():
        assert str(Product.objects.get(sku=sku).price) == price


@pytest.mark.parametrize("case", cases("image"))
def test_image_upload(case, catalogue, db, client, settings):
    for name, value in case.get("settings", {}).items():
        setattr(settings, name, value)
    path = CORPUS / case["file"]
    upload = SimpleUploadedFile(case.get("name", path.name), path.read_bytes())
    response = client.post("/api/search/image", {"image": upload})
    assert response.status_code == case["expect"]["status"], response.content[:300]
    if case["expect"]["error"]:
        assert matches(response.json()["error"], case["expect"]["error"]), response.json()


class _Server(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).requests.append(self.path)
        if self.path.startswith("/redirect?to=") or self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1] if "=" in self.path else self.path)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"IMAGE")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.mark.parametrize("case", cases("url"))
def test_image_url(case, server_port, monkeypatch):
    _Server.requests = []
    answers = {name: list(values) for name, values in case.get("dns", {}).items()}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):  # the attacker's DNS server, for made-up names
        if host not in answers:
            return real(host, port, *args, **kwargs)
        answer = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answer.split("|")]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    url = case["url"].replace("{port}", str(server_port))
    networks = [ipaddress.ip_network(n) for n in case.get("allowed_networks", [])]
    with pytest.raises(FetchError) as caught:
        read_url(url, max_bytes=1000, timeout=0.5, allowed_networks=networks)
    assert matches(str(caught.value), case["expect"]["error"]), str(caught.value)
    if "server_requests" in case["expect"]:
        assert len(_Server.requests) == case["expect"]["server_requests"], _Server.requests


@pytest.mark.parametrize("case", cases("api"))
def test_api_parameters(case, catalogue, db, client):
    if case["method"] == "get":
        response = client.get(case["path"])
    elif "content_type" in case:
        response = client.post(case["path"], case["data"], content_type=case["content_type"])
    else:
        response = client.post(case["path"], case["data"])
    assert response.status_code == case["expect"]["status"], response.content[:300]
    if case["expect"]["error"]:
        assert matches(response.json()["error"], case["expect"]["error"]), response.json()
