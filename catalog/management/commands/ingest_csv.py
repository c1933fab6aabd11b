from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from catalog.ingest import ImportFileError, prepare_upload, run_import
from catalog.jobs import job_state
from catalog.models import ImportJob
from embeddings.registry import ensure_active_model


class Command(BaseCommand):
    help = "Import a catalogue CSV (sku,title,description,category,price,image) or a ZIP of CSV + images."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--wait", action="store_true", help="return only when every imported product is searchable")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds --wait may take")
        parser.add_argument("--quiet-errors", action="store_true", help="do not list bad rows")

    def handle(
        self, *args: object, path: Path, wait: bool, timeout: float, quiet_errors: bool, **options: object
    ) -> None:
        if not path.is_file():
            raise CommandError(f"{path} does not exist or is not a file")
        ensure_active_model()
        job = ImportJob.objects.create(source_name=str(path), csv_path=str(path.resolve()))
        try:  # the admin's and the API's own path: a ZIP is extracted, a CSV read as it is
            prepare_upload(job, path.resolve(), unzip_into=path.resolve().parent / f".{path.stem}-unzipped")
        except ImportFileError as exc:
            job.status, job.error_message = ImportJob.Status.FAILED, str(exc)
            job.save()
            raise CommandError(str(exc)) from exc

        bar = tqdm(total=0, unit="row", desc="import", disable=None)

        def progress(j: ImportJob) -> None:
            bar.total = j.total_rows
            bar.n = j.processed_rows
            bar.set_postfix(created=j.created, updated=j.updated, unchanged=j.unchanged, failed=j.failed)
            bar.refresh()

        job = run_import(job, progress=progress)
        bar.close()
        if job.status == ImportJob.Status.FAILED:
            raise CommandError(job.error_message)
        for note in job.notes:
            self.stderr.write(f"note: {note}")
        if job.errors and not quiet_errors:
            for error in job.errors:
                self.stderr.write(f"row {error['row']}: {error['sku'] or '-'}: {error['error']}")
            if job.failed + job.duplicates > len(job.errors):
                self.stderr.write(f"... and {job.failed + job.duplicates - len(job.errors)} more rows reported")
        if wait:
            self._wait(job, timeout)
        state = job_state(job)
        self.stdout.write(f"import #{job.pk}: {job.summary()}; {state['embedded']}/{state['to_embed']} embedded")

    def _wait(self, job: ImportJob, timeout: float) -> None:
        total = len(job.product_ids)
        bar = tqdm(total=total, unit="product", desc="embed", disable=None)
        deadline = time.monotonic() + timeout
        while True:
            job.refresh_from_db()
            state = job_state(job)
            bar.n = state["embedded"]
            bar.refresh()
            if state["status"] == ImportJob.Status.DONE:
                break
            if time.monotonic() > deadline:
                bar.close()
                raise CommandError(
                    f"timed out after {timeout:.0f}s with {state['embedded']}/{total} embedded: "
                    "is a Celery worker running on the 'embed' queue?"
                )
            time.sleep(0.5)
        bar.close()
