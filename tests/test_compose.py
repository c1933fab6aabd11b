"""docker-compose.yml holds the shape docs/scaling.md describes.

Docker may not run where the tests do (it does not on the development machine), so the file is
checked as data: the services, the settings the app reads, the scripts it mounts. The replica's
entrypoint itself runs for real in tests/searchsite/test_replica.py. Where `docker compose`
exists, `docker compose config` must accept the file too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env(service: dict) -> dict:
    return service.get("environment") or {}


def test_services(compose) -> None:
    assert set(compose["services"]) == {
        "db",
        "db-replica",
        "redis",
        "migrate",
        "web",
        "worker-prepare",
        "worker-embed",
        "beat",
        "worker-embed-gpu",
    }


def test_search_reads_go_to_a_streaming_replica_of_db(compose) -> None:
    services = compose["services"]
    replica = services["db-replica"]
    assert replica["image"] == services["db"]["image"]  # the same Postgres and pgvector
    assert replica["entrypoint"] == ["sh", "/docker/db-replica.sh"]
    assert env(replica)["PRIMARY_HOST"] == "db"
    assert replica["depends_on"]["db"]["condition"] == "service_healthy"
    assert "./docker/db-replica.sh:/docker/db-replica.sh:ro" in replica["volumes"]
    assert any(v.startswith("pgreplica:") for v in replica["volumes"]) and "pgreplica" in compose["volumes"]
    # db lets the replica connect for replication, keeps WAL for it to catch up from
    assert "./docker/db-primary-init.sh:/docker-entrypoint-initdb.d/10-replication.sh:ro" in services["db"]["volumes"]
    assert "wal_keep_size=2GB" in services["db"]["command"]
    # The web app reads search from it (the setting searchsite/settings.py reads); nothing else does.
    url = env(services["web"])["DATABASE_REPLICA_URL"]
    assert re.fullmatch(r"\$\{DATABASE_REPLICA_URL-postgres://vitrine:vitrine@db-replica:5432/vitrine\}", url)
    assert "REPLICA_MAX_LAG_SECONDS" in env(services["web"])
    assert env(services["web"])["DATABASE_URL"].endswith("@db:5432/vitrine")  # writes: the primary
    for name in ("worker-prepare", "worker-embed", "beat", "migrate"):
        assert "DATABASE_REPLICA_URL" not in env(services[name]), name


def test_scripts_are_shell_that_parses() -> None:
    for script in ("db-replica.sh", "db-primary-init.sh"):
        path = REPO / "docker" / script
        assert os.access(path, os.X_OK), script
        subprocess.run(["sh", "-n", str(path)], check=True)
    assert "--write-recovery-conf" in (REPO / "docker" / "db-replica.sh").read_text()
    assert "host replication" in (REPO / "docker" / "db-primary-init.sh").read_text()


def test_embed_workers_scale_out(compose) -> None:
    services = compose["services"]
    for name in ("worker-embed", "worker-embed-gpu"):
        worker = services[name]
        # Copies of a service must not clash: no fixed name or host port, one Celery node name each.
        assert "container_name" not in worker and "ports" not in worker, name
        command = worker["command"]
        assert command[command.index("-Q") + 1] == "embed"
        assert "@%h" in command[command.index("-n") + 1]  # %h: the container's own host name
    assert services["worker-embed"]["deploy"]["replicas"] == "${EMBED_WORKERS:-1}"
    gpu = services["worker-embed-gpu"]
    assert gpu["profiles"] == ["gpu"] and env(gpu)["EMBEDDINGS_DEVICE"] == "cuda"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert env(services["worker-embed"])["EMBEDDINGS_DEVICE"] == "cpu"


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="docker compose is not installed here",
)
def test_docker_compose_accepts_the_file() -> None:
    subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "-q"],
        check=True,
        env={**os.environ, "SECRET_KEY": "test-only"},
    )


def test_the_image_serves_the_site_as_make_run_does() -> None:
    """The Dockerfile's command is runsite's gunicorn (searchsite.supervisor.gunicorn_argv)."""
    import json
    import sys

    from searchsite.supervisor import gunicorn_argv

    cmd = next(
        json.loads(line[4:]) for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")
    )
    assert cmd[:3] == ["python", "-m", "searchsite.supervisor"]
    printed = subprocess.run(
        [sys.executable, *cmd[1:], "--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "WEB_WORKERS": "3"},
        check=True,
    ).stdout.split()
    assert printed == gunicorn_argv("0.0.0.0:8000", 3)
