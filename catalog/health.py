"""/healthz: is the site whole? Database, workers per queue, queue depths, backlog, stuck jobs.

Answers 200 when the database is up and every queue has a live worker, else 503 with
the reasons. Backlog and stuck jobs are reported (the reconciler repairs them) but do not
fail the check on their own. The admin index shows the same figures.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from catalog.models import ImportJob, Product
from embeddings.models import EmbeddingModel, TrainingJob
from embeddings.reconcile import SERVING, not_searchable
from embeddings.vector_index import missing_indexes
from ops import beat, broker
from ops.models import JobHeartbeat

logger = logging.getLogger(__name__)


def _stuck(kind: str, jobs: list[Any], stale: Any) -> list[dict]:
    beats = dict(
        JobHeartbeat.objects.filter(kind=kind, job_id__in=[j.pk for j in jobs]).values_list("job_id", "beat_at")
    )
    return [
        {"id": j.pk, "status": j.status, "last_heartbeat": beats.get(j.pk)}
        for j in jobs
        if (beats.get(j.pk) or j.created_at) < stale
    ]


def health_report() -> dict:
    """Every figure /healthz and the admin panel show; `ok` and `problems` sum them up."""
    problems: list[str] = []
    report: dict[str, Any] = {"broker": broker.broker_name(), "checked_at": timezone.now()}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        report["database"] = "up"
    except Exception as exc:  # any failure to reach it is "down", with the reason
        connection.close()
        report.update(database=f"down: {exc}".strip(), ok=False, problems=["database is down"], status_code=503)
        return report

    workers = beat.live_workers()
    report["workers"] = {
        queue: [
            {"node": w.nodename, "pid": w.pid, "last_seen": w.beat_at, "task": w.task or None}
            for w in workers
            if queue in w.queue_list
        ]
        for queue in broker.QUEUES
    }
    for queue, nodes in report["workers"].items():
        if not nodes:
            problems.append(f"no live worker on queue {queue!r}")
    try:
        report["queues"] = broker.depths()
    except Exception as exc:
        report["queues"] = None
        problems.append(f"broker unreachable: {exc}")

    products = Product.objects.count()
    report["products"] = products
    report["models"] = [
        {
            "name": m.name,
            "status": m.status,
            "not_searchable": not_searchable(m),
            # Built once its vectors are stored: an activating model has none yet.
            "missing_indexes": []
            if m.status == EmbeddingModel.Status.ACTIVATING
            else missing_indexes(m.pk, m.column_dims()),
        }
        for m in EmbeddingModel.objects.filter(status__in=SERVING)
    ]
    active = next((m for m in report["models"] if m["status"] == EmbeddingModel.Status.ACTIVE), None)
    report["not_searchable"] = active["not_searchable"] if active else products

    stale = beat.stale_before()
    report["stuck_jobs"] = {
        "imports": _stuck(
            JobHeartbeat.Kind.IMPORT,
            list(ImportJob.objects.filter(status__in=[ImportJob.Status.RUNNING, ImportJob.Status.QUEUED])),
            stale,
        ),
        "trainings": _stuck(
            JobHeartbeat.Kind.TRAINING, list(TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING)), stale
        ),
    }
    report["warnings"] = []
    if report["not_searchable"]:
        report["warnings"].append(f"{report['not_searchable']} of {products} products not yet searchable")
    for m in report["models"]:
        if m["missing_indexes"]:
            # Search still answers, exactly, by scanning every vector of the model: slowly.
            report["warnings"].append(
                f"model {m['name']} lacks valid HNSW indexes {', '.join(m['missing_indexes'])}: its searches scan "
                "every vector; manage.py build_vector_indexes builds them"
            )
    stuck = sum(len(v) for v in report["stuck_jobs"].values())
    if stuck:
        report["warnings"].append(
            f"{stuck} job(s) stopped with no live process; the reconciler will resume or end them"
        )
    report["ok"] = not problems
    report["problems"] = problems
    report["status_code"] = 200 if not problems else 503
    report["reconcile_interval_seconds"] = settings.RECONCILE_INTERVAL_SECONDS
    return report


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    report = health_report()
    status = report.pop("status_code")
    report["message"] = "ok" if report["ok"] else "; ".join(report["problems"])
    return JsonResponse(report, status=status, json_dumps_params={"indent": 1})
