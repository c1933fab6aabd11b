"""Reading a catalogue row's image reference: a path inside the CSV's folder or an http(s) URL.

Both are untrusted input. Paths may not leave the folder (no absolute paths, no `..`,
no symlinks pointing out). URLs may not reach loopback, private, link-local or other
non-public addresses unless INGEST_ALLOW_PRIVATE_URLS is set (or the address is in
INGEST_ALLOWED_PRIVATE_NETWORKS), and every redirect hop is checked again. Sizes are capped
while streaming, before anything is decoded.

A host name is resolved once per hop; every address it resolves to is checked, and the
connection is made to a checked address with the original Host header and TLS server name.
Resolving again at connect time (as urllib would) leaves a DNS-rebinding window: a name
that answers a public address to the check and 127.0.0.1 to the connect.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import ParseResult, quote, urljoin, urlparse

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = "Vitrine-ingest/0.1"
# IPv6 forms that carry an IPv4 address inside (NAT64 well-known prefix)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FetchError(ValueError):
    pass


def is_url(ref: str) -> bool:
    return ref.lower().startswith(("http://", "https://"))


def read_local(ref: str, base_dir: Path, max_bytes: int) -> bytes:
    if not ref:
        raise FetchError("image is empty")
    if "\0" in ref:
        raise FetchError("image path contains a NUL character")
    candidate = Path(ref)
    if candidate.is_absolute() or ref.startswith(("/", "\\")) or not candidate.parts or ":" in candidate.parts[0]:
        raise FetchError(f"image path {ref!r} must be relative to the CSV's folder")
    base = base_dir.resolve()
    path = (base / candidate).resolve()
    if not path.is_relative_to(base):
        raise FetchError(f"image path {ref!r} escapes the CSV's folder")
    try:
        if not path.is_file():
            raise FetchError(f"image file {ref!r} not found")
        size = path.stat().st_size
    except OSError as exc:  # a name too long, a permission problem
        raise FetchError(f"image file {ref[:200]!r} cannot be read: {exc.strerror or exc}") from exc
    if size > max_bytes:
        raise FetchError(f"image file {ref!r} is too large ({size:,} bytes; limit {max_bytes:,})")
    return path.read_bytes()


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return address.ipv4_mapped
        if address.sixtofour:
            return address.sixtofour
        if address.teredo:
            return address.teredo[1]
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: Address) -> bool:
    inner = _embedded_ipv4(address)
    if inner is not None and not is_public(inner):
        return False
    return address.is_global and not address.is_multicast


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to, in the resolver's order (duplicates dropped)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve host {host!r}: {exc}") from exc
    addresses: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])  # drop an IPv6 scope id
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchError(f"cannot resolve host {host!r}")
    return addresses


def checked_addresses(
    host: str, port: int, allow_private: bool = False, allowed_networks: Iterable[Network] = ()
) -> list[Address]:
    """Resolve `host` once and refuse it if any address is not public (or allowed)."""
    addresses = resolve(host, port)
    if not allow_private:
        networks = list(allowed_networks)
        for address in addresses:
            if not is_public(address) and not any(address in net for net in networks):
                raise FetchError(f"image URL host {host!r} resolves to a non-public address ({address}); refused")
    return addresses


def check_public_host(host: str, port: int) -> None:
    checked_addresses(host, port)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to a fixed, already checked address; Host header from the URL."""

    def __init__(self, host: str, port: int, address: Address, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.pinned = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self.pinned), self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a fixed, already checked address; SNI and certificate checked for the URL's host."""

    def __init__(self, host: str, port: int, address: Address, timeout: float) -> None:
        self.ssl_context = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.ssl_context)
        self.pinned = address

    def connect(self) -> None:
        sock = socket.create_connection((str(self.pinned), self.port), self.timeout)
        self.sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)


def _request_target(parsed: ParseResult) -> str:
    target = parsed.path or "/"
    if parsed.query:
        target += "?" + parsed.query
    # Keep existing %xx escapes; escape spaces, non-ASCII and the like, as browsers do.
    return quote(target, safe="!#$%&'()*+,/:;=?@[]~")


def _get(
    url: str, address: Address, host: str, port: int, scheme: str, target: str, max_bytes: int, timeout: float
) -> tuple[int, str | None, bytes]:
    """One GET to a pinned address: (status, Location, body up to max_bytes + 1)."""
    kind = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    connection = kind(host, port, address, timeout)
    deadline = time.monotonic() + max(timeout, 1.0) * 4  # a slow drip may not hold a worker forever
    try:
        connection.request("GET", target, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
        response = connection.getresponse()
        if response.status in REDIRECTS:
            return response.status, response.getheader("Location"), b""
        if response.status != 200:
            return response.status, None, b""
        length = response.getheader("Content-Length") or ""
        if length.isdigit() and int(length) > max_bytes:
            raise FetchError(f"image at {url} is too large ({int(length):,} bytes)")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = response.read(min(64 * 1024, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if time.monotonic() > deadline:
                raise FetchError(f"image at {url} took too long to download")
        return 200, None, b"".join(chunks)
    finally:
        connection.close()


def read_url(
    url: str,
    max_bytes: int,
    timeout: float,
    allow_private: bool = False,
    max_redirects: int = 3,
    allowed_networks: Iterable[Network] = (),
) -> bytes:
    networks = list(allowed_networks)
    for _ in range(max_redirects + 1):
        try:
            parsed = urlparse(url)
        except ValueError as exc:
            raise FetchError(f"image URL {url[:200]!r} is not a valid URL: {exc}") from exc
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise FetchError(f"image URL {url[:200]!r} is not an http(s) URL")
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            host = parsed.hostname.encode("idna").decode("ascii")
        except (ValueError, UnicodeError) as exc:
            raise FetchError(f"image URL {url[:200]!r} is not a valid URL: {exc}") from exc
        addresses = checked_addresses(host, port, allow_private, networks)
        status, location, data = 0, None, b""
        last_error: Exception | None = None
        for address in addresses:  # the first checked address that accepts the connection
            try:
                status, location, data = _get(
                    url, address, host, port, parsed.scheme, _request_target(parsed), max_bytes, timeout
                )
                last_error = None
                break
            except (ConnectionError, socket.timeout, TimeoutError) as exc:
                last_error = exc
            except (http.client.HTTPException, ssl.SSLError, OSError, ValueError) as exc:
                if isinstance(exc, FetchError):
                    raise
                raise FetchError(f"cannot download image {url}: {exc}") from exc
        if last_error is not None:
            raise FetchError(f"cannot download image {url}: {last_error}") from last_error
        if status in REDIRECTS and location:
            try:
                url = urljoin(url, location)
            except ValueError as exc:
                raise FetchError(f"image URL {url} redirects to an invalid URL {location[:200]!r}") from exc
            continue
        if status in REDIRECTS:
            raise FetchError(f"image URL {url} answered HTTP {status} without a Location")
        if status != 200:
            raise FetchError(f"image URL {url} answered HTTP {status}")
        if len(data) > max_bytes:
            raise FetchError(f"image at {url} is larger than {max_bytes:,} bytes")
        return data
    raise FetchError(f"image URL {url} redirects too many times")
