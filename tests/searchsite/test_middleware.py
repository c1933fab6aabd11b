"""A database that is down answers 503 with a clear message, never a 500."""

from __future__ import annotations

import json
import sys

from django.db import InterfaceError, OperationalError
from django.test import RequestFactory

from searchsite.middleware import DatabaseUnavailableMiddleware, is_database_down, server_error


def test_a_database_error_in_a_view_is_a_503():
    middleware = DatabaseUnavailableMiddleware(lambda r: None)
    request = RequestFactory().get("/api/search?q=red")
    response = middleware.process_exception(request, OperationalError("connection refused"))
    assert response.status_code == 503 and response["Retry-After"] == "10"
    assert "database is unavailable" in json.loads(response.content)["error"]
    page = middleware.process_exception(RequestFactory().get("/"), InterfaceError("connection already closed"))
    assert page.status_code == 503 and b"Back in a moment" in page.content


def test_other_errors_are_left_to_django():
    middleware = DatabaseUnavailableMiddleware(lambda r: None)
    assert middleware.process_exception(RequestFactory().get("/"), ValueError("bug")) is None


def test_a_wrapped_database_error_counts():
    try:
        try:
            raise OperationalError("server closed the connection unexpectedly")
        except OperationalError as exc:
            raise RuntimeError("session save failed") from exc
    except RuntimeError as outer:
        assert is_database_down(outer)


def test_handler500_turns_a_database_error_outside_a_view_into_a_503(settings):
    request = RequestFactory().get("/")
    try:
        raise OperationalError("the database system is starting up")
    except OperationalError:
        assert sys.exc_info()[1] is not None
        assert server_error(request).status_code == 503
    try:
        raise ValueError("bug")
    except ValueError:
        assert server_error(request).status_code == 500


def test_an_unknown_api_url_is_a_json_404_and_a_page_stays_html(client):
    # A line break in an id matches no path converter: the resolver, not the view, answers.
    response = client.get("/api/imports/12%0A3")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert "no such API resource" in json.loads(response.content)["error"]
    assert client.get("/api/no-such-thing").json()["error"].startswith("no such API resource")
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
