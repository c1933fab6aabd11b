"""An uploaded catalogue file (the admin's import form, POST /api/imports) -> a queued import.

Both front doors check the file with `upload_problem` and hand it to `queue_import`, which
stores it and queues catalog.tasks.import_catalogue: the same task, prepare_upload and
run_import as every other import.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from catalog.models import ImportJob
from catalog.tasks import import_catalogue
from embeddings.registry import ensure_active_model

# .tsv/.txt: Excel's "Unicode text" export (tab-separated UTF-16), read like a CSV
EXTENSIONS = (".csv", ".tsv", ".txt", ".zip")


class UploadRefused(ValueError):
    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def check_upload(upload: UploadedFile) -> None:
    """UploadRefused naming the problem, for a file that is too big or not a CSV/ZIP."""
    if upload.size is not None and upload.size > settings.MAX_IMPORT_BYTES:
        raise UploadRefused(
            f"File is {upload.size:,} bytes; the limit is {settings.MAX_IMPORT_BYTES:,}.", too_large=True
        )
    if not (upload.name or "").lower().endswith(EXTENSIONS):
        raise UploadRefused("Upload a .csv or a .zip file (or a .tsv/.txt tab-separated export).")


def queue_import(upload: UploadedFile) -> ImportJob:
    """Store the upload under DATA_DIR/imports and queue its import once this transaction commits."""
    folder = settings.DATA_DIR / "imports" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    # The name shows in the job's messages; anything but letters, digits, '.', '-' becomes '_'
    # (a NUL or a name like '..' could not be a file name).
    name = re.sub(r"[^\w.-]", "_", Path(upload.name or "upload.csv").name)[-120:].lstrip(".") or "upload.csv"
    target = folder / name
    with open(target, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    ensure_active_model()
    # csv_path names the upload from the start, so the reconciler can queue a lost job again.
    job = ImportJob.objects.create(source_name=(upload.name or "")[:300], csv_path=str(target))
    transaction.on_commit(lambda: import_catalogue.delay(job.pk, str(target)))
    return job
