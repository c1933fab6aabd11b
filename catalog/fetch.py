"""Reading a catalogue row's image reference: a path inside the CSV's folder or an http(s) URL.

Both are untrusted input. Paths may not leave the folder (no absolute paths, no `..`,
no symlinks pointing out). URLs may not reach loopback, private, link-local or other
non-public addresses unless INGEST_ALLOW_PRIVATE_URLS is set, and every redirect hop is
checked again. Sizes are capped while streaming, before anything is decoded.
"""
from __future__ import annotations

import ipaddress
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlparse


class FetchError(ValueError):
    pass


def is_url(ref: str) -> bool:
    return ref.lower().startswith(("http://", "https://"))


def read_local(ref: str, base_dir: Path, max_bytes: int) -> bytes:
    if not ref:
        raise FetchError("image is empty")
    candidate = Path(ref)
    if candidate.is_absolute() or ref.startswith(("/", "\\")) or ":" in candidate.parts[0]:
        raise FetchError(f"image path {ref!r} must be relative to the CSV's folder")
    base = base_dir.resolve()
    path = (base / candidate).resolve()
    if not path.is_relative_to(base):
        raise FetchError(f"image path {ref!r} escapes the CSV's folder")
    if not path.is_file():
        raise FetchError(f"image file {ref!r} not found")
    size = path.stat().st_size
    if size > max_bytes:
        raise FetchError(f"image file {ref!r} is too large ({size:,} bytes; limit {max_bytes:,})")
    return path.read_bytes()


def check_public_host(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve host {host!r}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise FetchError(
                f"image URL host {host!r} resolves to a non-public address ({address}); refused"
            )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def read_url(
    url: str, max_bytes: int, timeout: float, allow_private: bool = False, max_redirects: int = 3
) -> bytes:
    for _ in range(max_redirects + 1):
        parsed = urlparse(url)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise FetchError(f"image URL {url!r} is not an http(s) URL")
        if not allow_private:
            check_public_host(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80))
        request = urllib.request.Request(url, headers={"User-Agent": "Vitrine-ingest/0.1"})
        try:
            with _opener.open(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > max_bytes:
                    raise FetchError(f"image at {url} is too large ({int(length):,} bytes)")
                data = response.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise FetchError(f"image at {url} is larger than {max_bytes:,} bytes")
                return data
        except urllib.error.HTTPError as exc:
            if exc.code in (301, 302, 303, 307, 308) and exc.headers.get("Location"):
                url = urljoin(url, exc.headers["Location"])
                continue
            raise FetchError(f"image URL {url} answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FetchError(f"cannot download image {url}: {reason}") from exc
    raise FetchError(f"image URL {url} redirects too many times")
