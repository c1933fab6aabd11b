"""The reconciler: after any crash, put the site back to "every product searchable, no job stuck".

One pass (catalog.tasks.reconcile, run on every worker start and every
RECONCILE_INTERVAL_SECONDS by Celery beat):
- vectors missing under the active or an activating model are queued again
  (embeddings/reconcile.py, which never queues what is already queued or in flight);
- an import whose process stopped beating resumes from its last committed chunk, at most
  IMPORT_MAX_RESUMES times, else ends FAILED naming the row it reached;
- an import still "embedding" whose products are all searchable is marked done;
- a training whose process stopped beating ends FAILED (embeddings/reconcile.py).
Passes never overlap: a Postgres advisory lock lets one run at a time.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from catalog.jobs import job_state
from catalog.models import ImportJob
from embeddings.reconcile import TrainingReport, VectorReport, reconcile_trainings, reconcile_vectors
from ops import beat, broker
from ops.models import JobHeartbeat
from searchsite.celery import app

logger = logging.getLogger(__name__)

LOCK_KEY = 0x76697472  # "vitr": any constant shared by all reconcilers of this database
# Sent by name: catalog/tasks.py defines them and imports this module.
IMPORT_CATALOGUE, RESUME_IMPORT = "catalog.tasks.import_catalogue", "catalog.tasks.resume_import"
IMPORT_TASKS = (IMPORT_CATALOGUE, RESUME_IMPORT)


@dataclass
class ImportReport:
    resumed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)


@dataclass
class Report:
    ran: bool = True  # False: another reconciler held the lock
    vectors: VectorReport = field(default_factory=VectorReport)
    imports: ImportReport = field(default_factory=ImportReport)
    trainings: TrainingReport = field(default_factory=TrainingReport)

    def as_dict(self) -> dict:
        return asdict(self)


def _fail(job: ImportJob, message: str, now: datetime) -> None:
    job.status, job.error_message, job.finished_at = ImportJob.Status.FAILED, message, now
    job.save(update_fields=["status", "error_message", "finished_at"])


def live_imports_since(now: datetime) -> datetime | None:
    """When the oldest import that is still running (and beating) started, if any."""
    stale = beat.stale_before(now)
    alive = JobHeartbeat.objects.filter(kind=JobHeartbeat.Kind.IMPORT, beat_at__gte=stale).values("job_id")
    job = ImportJob.objects.filter(status=ImportJob.Status.RUNNING, pk__in=alive).order_by("created_at").first()
    return job.created_at if job else None


def reconcile_imports(now: datetime | None = None, messages: list[broker.Message] | None = None) -> ImportReport:
    now = now or timezone.now()
    stale = beat.stale_before(now)
    report = ImportReport()
    waiting = messages if messages is not None else list(broker.messages(("prepare",)))
    queued = {int(m.args[0]) for m in waiting if m.task in IMPORT_TASKS and m.args}
    for task in IMPORT_TASKS:
        queued |= {int(a[0]) for a in beat.in_flight(task) if a}
    for job in ImportJob.objects.filter(status__in=[ImportJob.Status.RUNNING, ImportJob.Status.QUEUED]):
        if job.pk in queued:
            continue
        heartbeat = JobHeartbeat.objects.filter(kind=JobHeartbeat.Kind.IMPORT, job_id=job.pk).first()
        if (heartbeat.beat_at if heartbeat else job.created_at) >= stale:
            continue
        resumes = heartbeat.resumes if heartbeat else 0
        reached = f"row {job.processed_rows} of {job.total_rows}" if job.total_rows else "the start"
        if not job.csv_path or not Path(job.csv_path).is_file():
            _fail(
                job,
                f"Interrupted at {reached}: the process running it stopped and the file is gone; "
                "import the file again (rows already stored are kept).",
                now,
            )
            report.failed.append(job.pk)
            continue
        if resumes >= settings.IMPORT_MAX_RESUMES:
            _fail(
                job,
                f"Interrupted at {reached}: the process running it stopped {resumes + 1} times; "
                "import the file again to finish it (rows already stored are kept).",
                now,
            )
            report.failed.append(job.pk)
            continue
        # The new heartbeat gives the resumed run a full stale window to start beating.
        JobHeartbeat.objects.update_or_create(
            kind=JobHeartbeat.Kind.IMPORT,
            job_id=job.pk,
            defaults={"beat_at": now, "owner": "reconciler", "resumes": resumes + 1},
        )
        if job.status == ImportJob.Status.QUEUED:
            transaction.on_commit(app.signature(IMPORT_CATALOGUE, args=(job.pk, job.csv_path)).delay)
            report.requeued.append(job.pk)
        else:
            transaction.on_commit(app.signature(RESUME_IMPORT, args=(job.pk,)).delay)
            report.resumed.append(job.pk)
        logger.warning(
            "reconcile: import #%d stopped at %s with no live process; %s",
            job.pk,
            reached,
            "queued again" if job.status == ImportJob.Status.QUEUED else "resuming",
        )
    for job in ImportJob.objects.filter(status=ImportJob.Status.EMBEDDING):
        if job_state(job)["status"] == ImportJob.Status.DONE:
            report.finished.append(job.pk)
    return report


def reconcile() -> Report:
    """One reconcile pass; a no-op (ran=False) while another pass holds the lock."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [LOCK_KEY])
            if not cursor.fetchone()[0]:
                return Report(ran=False)
        now = timezone.now()
        # Read both queues once: every part below judges "already queued" from the same snapshot.
        messages = list(broker.messages())
        report = Report(
            vectors=reconcile_vectors(now, messages, saving_since=live_imports_since(now)),
            imports=reconcile_imports(now, messages),
            trainings=reconcile_trainings(now, messages),
        )
    return report
