"""Schemathesis against the served schema (/api/openapi.json), in process over WSGI.

Every operation gets schema-valid and schema-invalid requests (wrong types, out-of-range
numbers, odd strings, broken multipart bodies); every answer must be a documented status
with a body that matches the schema, and never a 5xx. The catalogue is the 40-product
fixture, embedded, so searches really rank products.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from catalog import openapi
from tests.catalog.test_search import catalogue  # noqa: F401  (module fixture)

# About 40 s on the 2-core development machine; raise it for a longer hunt.
EXAMPLES = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "60"))
# Not negative_data_rejection: in a query string or a multipart form every value is text, so
# "14148" is a fine category even when schemathesis meant it as an integer.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# The schema the site serves (test_the_served_schema_is_openapi_py proves it is this one);
# loaded at import because schemathesis parametrizes tests at collection time.
schema = schemathesis.openapi.from_dict(openapi.schema())
APP = get_wsgi_application()


@pytest.fixture
def same_connection():
    """Keep the test's database connection (and its transaction) open across WSGI requests,
    as Django's test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_the_served_schema_is_openapi_py(client):
    assert client.get("/api/openapi.json").json() == openapi.schema()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_api_answers_every_request_as_documented(case, catalogue, db, same_connection):
    case.call_and_validate(app=APP, checks=CHECKS)
