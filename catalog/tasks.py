from __future__ import annotations

from pathlib import Path

from celery import shared_task
from django.utils import timezone

from catalog.analytics import prune
from catalog.ingest import ImportFileError, prepare_upload, run_import
from catalog.models import ImportJob
from catalog.popularity import refresh
from catalog.reconcile import reconcile as run_reconcile
from catalog.synonyms import refresh as refresh_synonyms_now


@shared_task(acks_late=True)
def import_catalogue(job_id: int, upload_path: str) -> str:
    """Run an admin-uploaded import on a 'prepare' worker."""
    job = ImportJob.objects.get(pk=job_id)
    if job.status not in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING):
        return job.status  # already ran: a redelivered message changes nothing
    try:
        prepare_upload(job, Path(upload_path))
    except ImportFileError as exc:
        job.status, job.error_message, job.finished_at = ImportJob.Status.FAILED, str(exc), timezone.now()
        job.save()
        return job.status
    return run_import(job).status


@shared_task(acks_late=True)
def resume_import(job_id: int) -> str:
    """Continue an import whose process died, after its last committed chunk (queued by the reconciler)."""
    job = ImportJob.objects.get(pk=job_id)
    if job.status != ImportJob.Status.RUNNING:
        return job.status
    return run_import(job, resume=True).status


@shared_task(acks_late=True)
def reconcile() -> dict:
    """Queue again what a crash lost; resume or end stuck jobs (catalog/reconcile.py)."""
    return run_reconcile().as_dict()


@shared_task
def refresh_popularity() -> tuple[int, int]:
    """Rebuild popular queries and clicked products from the search log (Celery beat)."""
    return refresh()


@shared_task
def refresh_synonyms() -> int:
    """Add the WordNet synonyms of new vocabulary words (catalog/synonyms.py): after each
    import and from Celery beat. Routed to the embed queue, whose worker reads WordNet anyway."""
    return refresh_synonyms_now()


@shared_task
def prune_search_log() -> int:
    """Delete search analytics older than SEARCH_LOG_DAYS (daily, from Celery beat)."""
    return prune()
