"""Per-client rate limits on the public search pages and API (django-ratelimit's counters in
Django's cache), answered with a 429 that says when to retry.

The limits are settings (SEARCH_RATE_LIMIT, PHOTO_SEARCH_RATE_LIMIT: "120/m", "30/m", ...),
read on every request; an empty one switches that limit off. Clients are told apart by
searchsite.security.client_key.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from typing import Any, Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django_ratelimit.core import get_usage

from searchsite.security import client_key

logger = logging.getLogger(__name__)

RATE_RE = re.compile(r"^(\d+)/(\d*)([smhd])$")
PERIOD_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}

View = Callable[..., HttpResponse]


def describe(rate: str) -> str:
    """'120/m' -> '120 per minute'; '10/5m' -> '10 per 5 minutes'."""
    match = RATE_RE.match(rate)
    assert match is not None, rate  # the settings refuse any other form (envrate)
    count, multiple, period = match.groups()
    word = PERIOD_WORDS[period]
    return f"{count} per {multiple} {word}s" if multiple and multiple != "1" else f"{count} per {word}"


def rate_limit(
    group: str, setting: str, *, methods: tuple[str, ...] | None = None, json: bool = False
) -> Callable[[View], View]:
    """Count each request of `methods` (default: all) against the client's `group` budget,
    whose rate is settings.<setting>; over it, answer 429 without calling the view."""

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            rate = getattr(settings, setting)
            if rate and (methods is None or request.method in methods):
                retry_after = _retry_after(request, group, rate)
                if retry_after is not None:
                    return too_many_requests(request, rate, retry_after, json=json)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _retry_after(request: HttpRequest, group: str, rate: str) -> int | None:
    """Seconds until the client may try again, or None when within its budget."""
    try:
        usage = get_usage(request, group=group, key=lambda _group, req: client_key(req), rate=rate, increment=True)
    except Exception:  # noqa: BLE001
        # A cache outage (Redis restarting) must not take search down with it: let it through.
        logger.warning("rate limit %s not checked: the cache is unavailable", group, exc_info=True)
        return None
    if usage is None or not usage["should_limit"]:
        return None
    return max(1, int(usage["time_left"]))


def too_many_requests(request: HttpRequest, rate: str, retry_after: int, *, json: bool) -> HttpResponse:
    minutes = math.ceil(retry_after / 60)
    wait = f"{retry_after} second{'s' if retry_after != 1 else ''}" if retry_after < 120 else f"{minutes} minutes"
    message = f"Too many requests: the limit is {describe(rate)} per client. Try again in {wait}."
    response: HttpResponse
    if json:
        response = JsonResponse({"error": message, "retry_after": retry_after}, status=429)
    elif request.GET.get("fragment"):  # search-as-you-type swaps this into the results region
        response = render(request, "catalog/_results.html", {"error": message}, status=429)
    else:
        response = render(request, "catalog/rate_limited.html", {"message": message}, status=429)
    response["Retry-After"] = str(retry_after)
    return response
