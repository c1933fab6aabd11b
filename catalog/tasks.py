from __future__ import annotations

from celery import shared_task

from catalog.ingest import ImportFileError, prepare_upload, run_import
from catalog.models import ImportJob


@shared_task(acks_late=True)
def import_catalogue(job_id: int, upload_path: str) -> str:
    """Run an admin-uploaded import on a 'prepare' worker."""
    from pathlib import Path

    from django.utils import timezone

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
