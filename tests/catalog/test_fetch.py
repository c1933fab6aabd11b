"""Image URLs in a catalogue, against a real HTTP server on loopback (allowed for the test)."""

from __future__ import annotations

import functools
import http.server
import ipaddress
import socket
import threading

import pytest

from catalog.fetch import FetchError, is_public, read_local, read_url
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


@pytest.mark.parametrize("ref", ["../x.png", "/etc/passwd", "images/../../x.png", "C:\\x.png", ".", "", "a\x00b"])
def test_local_paths_may_not_leave_the_folder(ref):
    with pytest.raises(FetchError):
        read_local(ref, IMAGES, 10_000_000)


# --- every connection goes to the address that was checked -----------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Serves one tiny body, or redirects when the path says so; records what it saw."""

    seen: list[tuple[str, str]] = []

    def do_GET(self):  # noqa: N802
        type(self).seen.append((self.path, self.headers.get("Host", "")))
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.end_headers()
            return
        body = b"IMAGE"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def fake_dns(monkeypatch):
    """Answers for made-up names (a stand-in for an attacker's DNS server); real lookups otherwise."""
    answers: dict[str, list[str]] = {}
    calls: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            calls.append(host)
            address = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, calls


def test_a_name_resolving_to_loopback_is_refused(recorder):
    with pytest.raises(FetchError, match=r"'localhost' resolves to a non-public address \(127.0.0.1\)"):
        read_url(f"http://localhost:{recorder}/x.png", max_bytes=1000, timeout=5)
    assert _Recorder.seen == []


def test_rebinding_name_is_connected_to_the_checked_address_only(recorder, fake_dns):
    answers, calls = fake_dns
    # first answer public (what the check sees), every later one loopback (what a second lookup would get)
    answers["rebind.example"] = ["93.184.215.14", "127.0.0.1"]
    with pytest.raises(FetchError, match="cannot download image"):
        read_url(f"http://rebind.example:{recorder}/x.png", max_bytes=1000, timeout=0.5)
    assert calls == ["rebind.example"]  # resolved once
    assert _Recorder.seen == []  # and never reached loopback


def test_checked_address_gets_the_original_host_header(recorder, fake_dns):
    answers, _ = fake_dns
    answers["images.shop.test"] = ["127.0.0.1"]
    data = read_url(
        f"http://images.shop.test:{recorder}/a b/ü.png?x=1",
        max_bytes=1000,
        timeout=5,
        allowed_networks=[ipaddress.ip_network("127.0.0.1/32")],
    )
    assert data == b"IMAGE"
    assert _Recorder.seen == [("/a%20b/%C3%BC.png?x=1", f"images.shop.test:{recorder}")]


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/x.png",
        "http://10.0.0.8/x.png",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:{port}/x.png",
        "http://private.example:{port}/x.png",
    ],
)
def test_a_redirect_to_a_private_address_is_refused(recorder, fake_dns, target):
    answers, _ = fake_dns
    answers["private.example"] = ["192.168.1.10"]
    allowed = [ipaddress.ip_network("127.0.0.1/32")]  # the first hop only
    location = target.format(port=recorder)
    with pytest.raises(FetchError, match="non-public address"):
        read_url(
            f"http://127.0.0.1:{recorder}/redirect?to={location}", max_bytes=1000, timeout=5, allowed_networks=allowed
        )
    assert [path for path, _ in _Recorder.seen] == [f"/redirect?to={location}"]


def test_a_redirect_within_allowed_addresses_is_followed(recorder):
    allowed = [ipaddress.ip_network("127.0.0.0/8")]
    data = read_url(
        f"http://127.0.0.1:{recorder}/redirect?to=/final.png", max_bytes=1000, timeout=5, allowed_networks=allowed
    )
    assert data == b"IMAGE" and [p for p, _ in _Recorder.seen] == ["/redirect?to=/final.png", "/final.png"]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "::1",
        "::ffff:127.0.0.1",
        "64:ff9b::a00:1",
        "2002:7f00:1::",
        "fe80::1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "100.64.0.1",
    ],
)
def test_non_public_addresses(address):
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x.png", "http:///x.png", "http://exa mple.com:99999/x", "http://[::1/x"]
)
def test_malformed_urls_are_refused_clearly(url):
    with pytest.raises(FetchError):
        read_url(url, max_bytes=1000, timeout=1)
