"""How far an import job is: rows read, and products embedded under the active model."""

from __future__ import annotations

from catalog.models import ImportJob
from embeddings.models import EmbeddingModel, ProductVector


def embedded_count(job: ImportJob) -> int:
    model = EmbeddingModel.active()
    if model is None or not job.product_ids:
        return 0
    return ProductVector.current(model).filter(product_id__in=job.product_ids).count()


def job_state(job: ImportJob) -> dict:
    """The job as the admin page and `ingest_csv --wait` see it; marks it DONE when searchable."""
    embedded = (
        embedded_count(job)
        if job.status == ImportJob.Status.EMBEDDING
        else (len(job.product_ids) if job.status == ImportJob.Status.DONE else 0)
    )
    if job.status == ImportJob.Status.EMBEDDING and embedded >= len(job.product_ids):
        job.status = ImportJob.Status.DONE
        job.save(update_fields=["status"])
    return {
        "id": job.pk,
        "source": job.source_name,
        "status": job.status,
        "total_rows": job.total_rows,
        "processed_rows": job.processed_rows,
        "percent": job.percent,
        "created": job.created,
        "updated": job.updated,
        "unchanged": job.unchanged,
        "failed": job.failed,
        "duplicates": job.duplicates,
        "to_embed": len(job.product_ids),
        "embedded": embedded,
        "errors": job.errors[:200],
        "error_message": job.error_message,
        "notes": job.notes,
        "summary": job.summary(),
    }
