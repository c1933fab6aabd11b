"""A search-log write (catalog/analytics.py) commits without waiting for the disk.

Its own module: real commits (transactional_db), away from test_analytics.py's module-wide
catalogue, whose transaction would hold every write inside it.
"""

from __future__ import annotations

import uuid

from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog import analytics
from catalog.models import SearchLog


def _log_row() -> SearchLog:
    return SearchLog(
        id=uuid.uuid4(),
        created_at=timezone.now(),
        kind="text",
        text="dark coat",
        mode="hybrid",
        page=1,
        results=3,
        took_ms=1.0,
        source="api",
        corrected=False,
        visitor="",
    )


def test_a_log_write_commits_without_waiting_for_the_disk(transactional_db):
    row = _log_row()
    with CaptureQueriesContext(connection) as seen:
        analytics._unflushed(lambda: row.save(force_insert=True))
    statements = [q["sql"] for q in seen.captured_queries]
    assert statements[:2] == ["BEGIN", "SET LOCAL synchronous_commit TO OFF"] and "INSERT" in statements[2]
    assert statements[-1] == "COMMIT"
    assert SearchLog.objects.filter(pk=row.pk).exists()  # committed
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"  # for that transaction only
    # Inside a caller's transaction the write joins it and changes nothing about it.
    with transaction.atomic(), CaptureQueriesContext(connection) as seen:
        analytics._unflushed(lambda: _log_row().save(force_insert=True))
    assert not any("synchronous_commit" in q["sql"] for q in seen.captured_queries)


def test_a_new_search_is_logged_in_one_round_trip_without_waiting_for_the_disk(transactional_db):
    row = _log_row()
    with CaptureQueriesContext(connection) as seen:
        analytics._insert_unflushed(row)
    (statement,) = [q["sql"] for q in seen.captured_queries]
    assert statement.startswith('SET LOCAL synchronous_commit TO OFF; INSERT INTO "catalog_searchlog"')
    stored = SearchLog.objects.get(pk=row.pk)  # committed, every field as given
    assert [(f.name, getattr(stored, f.name)) for f in SearchLog._meta.concrete_fields] == [
        (f.name, getattr(row, f.name)) for f in SearchLog._meta.concrete_fields
    ]
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"  # for that message's transaction only
        # what the write relies on: one message is one transaction, the SET LOCAL holds in it
        cursor.execute("SET LOCAL synchronous_commit TO OFF; SELECT current_setting('synchronous_commit')")
        while cursor.description is None and cursor.nextset():
            pass
        assert cursor.fetchone()[0] == "off"
    with transaction.atomic(), CaptureQueriesContext(connection) as seen:
        analytics._insert_unflushed(_log_row())
    assert not any("synchronous_commit" in q["sql"] for q in seen.captured_queries)
    assert SearchLog.objects.count() == 2
