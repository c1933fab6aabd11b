"""Error answers: while the database is down or restarting, 503 with a clear message, never a
500; an unknown /api/ URL, a JSON 404 like every other API error."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable

from django.db import InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse
from django.views.defaults import page_not_found as django_page_not_found
from django.views.defaults import server_error as django_server_error

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 10
MESSAGE = "The catalogue database is unavailable right now (restarting or unreachable); please retry in a few seconds."


def is_database_down(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, (OperationalError, InterfaceError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def unavailable(request: HttpRequest) -> HttpResponse:
    # The broken connection must not be reused by this worker's next request.
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            try:
                conn.close_if_unusable_or_obsolete()
            except Exception:  # closing a dead connection may fail too; it is dropped either way
                conn.connection = None
    if wants_json(request):
        response = HttpResponse(
            json.dumps({"error": MESSAGE, "retry_after": RETRY_AFTER_SECONDS}),
            status=503,
            content_type="application/json",
        )
    else:
        response = HttpResponse(
            f"<!doctype html><title>Vitrine: back in a moment</title><h1>Back in a moment</h1><p>{MESSAGE}</p>",
            status=503,
            content_type="text/html; charset=utf-8",
        )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_database_down(exception):
            logger.warning("database unavailable: %s %s -> 503 (%s)", request.method, request.path, exception)
            return unavailable(request)
        return None


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a database error raised outside a view (in a middleware, a session save) is a 503 too."""
    if is_database_down(sys.exc_info()[1]):
        logger.warning("database unavailable: %s %s -> 503", request.method, request.path)
        return unavailable(request)
    return django_server_error(request)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: a URL no route matches under /api/ (e.g. an id with a line break, which no
    path converter takes) answers JSON like the API's own 404s, not Django's HTML page."""
    if request.path.startswith("/api/"):
        return HttpResponse(
            json.dumps({"error": f"no such API resource: {request.path[:100]!r}"}),
            status=404,
            content_type="application/json",
        )
    return django_page_not_found(request, exception)
