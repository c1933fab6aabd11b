"""Who the client is (for rate limits and login throttling), and the admin login lockout.

See the "Security" section of the README and .env.example for the settings.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import timedelta
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or with TRUSTED_PROXY_COUNT = n reverse proxies in
    front, the n-th address from the right of X-Forwarded-For.

    Counting from the right matters: each proxy appends the address it saw, so anything to the
    left of what our outermost proxy appended was written by the client and may be forged.
    """
    remote = request.META.get("REMOTE_ADDR") or ""
    hops = settings.TRUSTED_PROXY_COUNT
    if hops > 0:
        forwarded = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [h for h in forwarded if h]
        if len(forwarded) >= hops:
            candidate = forwarded[-hops]
            if _is_ip(candidate):
                return candidate
    return remote or None  # no peer address: an in-process request (tests, shell)


def client_key(request: HttpRequest) -> str:
    """client_ip, with IPv6 addresses widened to their /64: one host usually holds a whole /64."""
    ip = client_ip(request) or "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False).network_address) + "/64"
    return ip


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class RequestOnlyAxesBackend(AxesStandaloneBackend):
    """django-axes' backend, for logins that come with a request (the admin login form).

    Axes refuses authenticate() calls without a request; those come from in-process code
    (the test client's login(), a shell), which has no client address to throttle. They go
    on to the next backend instead of failing.
    """

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """What a locked-out admin login sees: a 429 page saying why and for how long."""
    cool_off: timedelta | None = get_cool_off(request)
    minutes = math.ceil(cool_off.total_seconds() / 60) if cool_off else None
    response = render(
        request,
        "admin/locked_out.html",
        {
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "minutes": minutes,
            "title": "Too many failed logins",
        },
        status=429,
    )
    if cool_off:
        response["Retry-After"] = str(math.ceil(cool_off.total_seconds()))
    return response
