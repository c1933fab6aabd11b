from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from catalog.models import Product
from embeddings.models import EmbeddingModel, TrainingJob
from embeddings.tasks import train_model
from searchsite.supervisor import (
    WEB_WORKERS,
    WORKER_CONCURRENCY,
    Supervisor,
    celery_beat_argv,
    celery_worker_argv,
    gunicorn_argv,
)

DEMO_CSV = Path(settings.BASE_DIR) / "demo" / "catalogue.csv"


class Command(BaseCommand):
    help = "Run the whole site: migrate, start Celery workers, load the demo catalogue, serve HTTP."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.RUNSITE_HOST)
        parser.add_argument("--port", type=int, default=settings.RUNSITE_PORT)
        parser.add_argument("--no-demo", action="store_true", help="do not load the demo catalogue")
        parser.add_argument("--no-train", action="store_true", help="do not train a joint model on first run")
        parser.add_argument("--web-workers", type=int, default=WEB_WORKERS)

    def handle(self, *args: Any, **opts: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self._ensure_admin()
        log_dir = settings.DATA_DIR / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        supervisor = Supervisor(self._log, pid_dir=settings.DATA_DIR / "run")

        def on_sigterm(*_: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_sigterm)
        try:
            for queue in WORKER_CONCURRENCY:
                supervisor.add(f"worker-{queue}", celery_worker_argv(queue), log_dir / f"worker-{queue}.log")
            # Celery beat: the periodic reconcile (re-queues what a crash lost, ends stuck jobs).
            supervisor.add(
                "beat",
                celery_beat_argv(settings.DATA_DIR / "celerybeat-schedule"),
                log_dir / "beat.log",
            )
            supervisor.watch()
            self.stdout.write(f"workers and beat started under supervision; logs in {log_dir}")
            if not opts["no_demo"] and not Product.objects.exists() and DEMO_CSV.exists():
                self.stdout.write(f"loading the demo catalogue from {DEMO_CSV} ...")
                # In a child process: on a fresh site the import registers the first model, which
                # loads it (torch, ~600 MB); this supervisor lives as long as the site and runs none.
                subprocess.run(
                    [
                        sys.executable,
                        str(Path(settings.BASE_DIR) / "manage.py"),
                        "ingest_csv",
                        str(DEMO_CSV),
                        "--wait",
                        "--quiet-errors",
                    ],
                    check=True,
                )
            bind = f"{opts['host']}:{opts['port']}"
            supervisor.add("web", gunicorn_argv(bind, opts["web_workers"], log_dir / "access.log"))
            self.stdout.write(
                self.style.SUCCESS(f"Vitrine is running at http://{bind}/  (admin: http://{bind}/admin/)")
            )
            if not opts["no_train"] and Product.objects.exists():
                self._train_if_needed()
            self.stdout.write(f"Press Ctrl-C to stop. Health: http://{bind}/healthz")
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            # No second signal may interrupt the clean-up half-way.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.stdout.write("stopping ...")
            supervisor.stop()
            self.stdout.write("stopped")

    def _log(self, message: str) -> None:
        self.stdout.write(f"{time.strftime('%H:%M:%S')} runsite: {message}")
        self.stdout.flush()

    def _train_if_needed(self) -> None:
        """First run only: train the joint model on an 'embed' worker, then switch to it.

        Search keeps serving the baseline model meanwhile; progress is on /admin/ and /models/.
        """
        if EmbeddingModel.objects.filter(kind=EmbeddingModel.Kind.JOINT).exists() or TrainingJob.objects.exists():
            return
        job = TrainingJob.objects.create(params={}, activate=True)
        transaction.on_commit(lambda: train_model.delay(job.pk))
        self.stdout.write(
            f"training the joint image/text model in the background (training #{job.pk}, a few minutes on a "
            "2-core CPU); search serves the baseline model until the trained one is ready. "
            "Progress: /models/ and /admin/embeddings/trainingjob/"
        )

    def _ensure_admin(self) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        password = settings.VITRINE_ADMIN_PASSWORD or secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "admin@localhost", password)
        secret = settings.DATA_DIR / "admin-password.txt"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        self.stdout.write(f"created superuser 'admin'; password in {secret}")
