"""The reconciler: what a crash lost is queued again, exactly once; stuck jobs resume or end."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import timedelta

import pytest
from django.utils import timezone

from catalog import ingest
from catalog.models import ImportJob, Product
from catalog.reconcile import reconcile
from embeddings.models import EmbeddingModel, ProductVector, TrainingJob
from ops.models import EmbedLease, JobHeartbeat, WorkerHeartbeat
from tests.conftest import SMALL_CSV


@pytest.fixture(autouse=True)
def fs_broker(settings, tmp_path):
    """An empty filesystem broker folder of the test's own (never the shared Redis)."""
    folder = tmp_path / "broker"
    folder.mkdir()
    settings.REDIS_URL = ""
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    settings.RECONCILE_GRACE_SECONDS = 0
    return folder


def current(model: EmbeddingModel) -> int:
    return ProductVector.objects.filter(model=model).count()


def lose_vectors(n: int) -> tuple[EmbeddingModel, list[int]]:
    model = EmbeddingModel.active()
    ids = list(Product.objects.order_by("pk").values_list("pk", flat=True)[:n])
    ProductVector.objects.filter(model=model, product_id__in=ids).delete()
    return model, ids


def test_lost_vectors_are_queued_again(small_catalogue, django_capture_on_commit_callbacks):
    model, ids = lose_vectors(5)
    with django_capture_on_commit_callbacks(execute=True):
        report = reconcile()
    assert report.vectors.queued == {model.name: 5}
    assert current(model) == Product.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        again = reconcile()
    assert again.vectors.queued == {}  # nothing missing: nothing queued


def test_a_leased_product_is_not_queued_twice(small_catalogue, django_capture_on_commit_callbacks):
    model, ids = lose_vectors(5)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        first = reconcile()
    assert first.vectors.queued == {model.name: 5} and len(sent) == 1  # one batch
    assert set(EmbedLease.objects.values_list("product_id", flat=True)) == set(ids)
    with django_capture_on_commit_callbacks(execute=False) as sent_again:
        second = reconcile()
    assert second.vectors.queued == {} and second.vectors.pending == 5 and not sent_again


def test_an_expired_lease_is_queued_again(small_catalogue, settings, django_capture_on_commit_callbacks):
    model, ids = lose_vectors(3)
    with django_capture_on_commit_callbacks(execute=False):
        reconcile()
    EmbedLease.objects.update(queued_at=timezone.now() - timedelta(seconds=settings.RECONCILE_LEASE_SECONDS + 1))
    with django_capture_on_commit_callbacks(execute=False):
        assert reconcile().vectors.queued == {model.name: 3}


def test_batches_waiting_in_the_broker_or_in_flight_are_left_alone(
    small_catalogue, fs_broker, django_capture_on_commit_callbacks
):
    model, ids = lose_vectors(6)
    body = base64.b64encode(json.dumps([[ids[:3], model.pk], {}, {}]).encode()).decode()
    (fs_broker / "1_x.embed.msg").write_text(
        json.dumps(
            {
                "body": body,
                "headers": {"task": "embeddings.tasks.embed_products"},
                "properties": {"body_encoding": "base64"},
            }
        )
    )
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        nodename="embed@h",
        queues="embed",
        pid=1,
        started_at=now,
        beat_at=now,
        task="embeddings.tasks.embed_products",
        task_args=[ids[3:5], model.pk],
    )
    with django_capture_on_commit_callbacks(execute=False):
        report = reconcile()
    assert report.vectors.queued == {model.name: 1}  # only ids[5]: the others are queued or running
    assert list(EmbedLease.objects.values_list("product_id", flat=True)) == [ids[5]]


def test_just_saved_products_are_left_to_their_import(small_catalogue, settings, django_capture_on_commit_callbacks):
    settings.RECONCILE_GRACE_SECONDS = 3600
    lose_vectors(4)
    with django_capture_on_commit_callbacks(execute=False):
        assert reconcile().vectors.queued == {}


def test_an_activating_model_whose_last_batch_died_is_switched_to(small_catalogue, django_capture_on_commit_callbacks):
    """Every vector landed, but the worker died before the batch's completion step."""
    old = EmbeddingModel.active()
    new = EmbeddingModel.objects.create(
        name="next",
        kind=old.kind,
        spec=old.spec,
        backbone=old.backbone,
        text_tower=old.text_tower,
        image_dim=old.image_dim,
        text_dim=old.text_dim,
        status=EmbeddingModel.Status.ACTIVATING,
    )
    copies = list(ProductVector.objects.filter(model=old))
    for vector in copies:
        vector.pk, vector.model = None, new
    ProductVector.objects.bulk_create(copies)
    with django_capture_on_commit_callbacks(execute=True):
        report = reconcile()
    assert report.vectors.nudged == ["next"] and report.vectors.queued == {}
    new.refresh_from_db()
    assert new.status != EmbeddingModel.Status.ACTIVATING  # the completion step ran (switch or gate)


def stale_beat(kind: str, job_id: int, resumes: int = 0) -> None:
    JobHeartbeat.objects.update_or_create(
        kind=kind, job_id=job_id, defaults={"beat_at": timezone.now() - timedelta(hours=1), "resumes": resumes}
    )


def interrupted_import(copy_catalogue, monkeypatch, django_capture_on_commit_callbacks) -> ImportJob:
    """An import of 40 rows that 'crashed' after its second chunk of 10 committed."""
    from embeddings.registry import ensure_active_model

    ensure_active_model()
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 10)
    job = ImportJob.objects.create(source_name="small", csv_path=str(copy_catalogue()))
    with django_capture_on_commit_callbacks(execute=True):
        ingest.run_import(job)
    kept = list(Product.objects.order_by("sku").values_list("sku", flat=True)[:20])
    Product.objects.exclude(sku__in=kept).delete()  # rows 21-40 never happened
    job.status, job.processed_rows, job.created, job.finished_at = ImportJob.Status.RUNNING, 20, 20, None
    job.save()
    stale_beat("import", job.pk)
    return job


@pytest.mark.django_db(transaction=True)
def test_an_interrupted_import_resumes_after_its_last_chunk(
    copy_catalogue, monkeypatch, django_capture_on_commit_callbacks
):
    job = interrupted_import(copy_catalogue, monkeypatch, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        report = reconcile()
    assert report.imports.resumed == [job.pk]
    job.refresh_from_db()
    # Rows 1-20 are not read again (they would count "unchanged"); rows 21-40 are created.
    assert (job.created, job.unchanged, job.processed_rows) == (40, 0, 40)
    assert job.status in (ImportJob.Status.EMBEDDING, ImportJob.Status.DONE)
    assert Product.objects.count() == 40
    assert JobHeartbeat.objects.get(kind="import", job_id=job.pk).resumes == 1


@pytest.mark.django_db(transaction=True)
def test_an_import_that_keeps_dying_ends_failed_with_the_row_reached(
    copy_catalogue, monkeypatch, settings, django_capture_on_commit_callbacks
):
    job = interrupted_import(copy_catalogue, monkeypatch, django_capture_on_commit_callbacks)
    stale_beat("import", job.pk, resumes=settings.IMPORT_MAX_RESUMES)
    report = reconcile()
    job.refresh_from_db()
    assert report.imports.failed == [job.pk]
    assert job.status == ImportJob.Status.FAILED and job.finished_at
    assert job.error_message.startswith("Interrupted at row 20 of 40")


def test_an_import_whose_file_is_gone_ends_failed(db, tmp_path):
    job = ImportJob.objects.create(
        source_name="x.csv",
        csv_path=str(tmp_path / "gone.csv"),
        status=ImportJob.Status.RUNNING,
        processed_rows=200,
        total_rows=1000,
    )
    stale_beat("import", job.pk)
    assert reconcile().imports.failed == [job.pk]
    job.refresh_from_db()
    assert "row 200 of 1000" in job.error_message and "file is gone" in job.error_message


def test_a_live_import_is_left_alone(db, tmp_path):
    csv = tmp_path / "c.csv"
    shutil.copy(SMALL_CSV, csv)
    job = ImportJob.objects.create(source_name="c.csv", csv_path=str(csv), status=ImportJob.Status.RUNNING)
    JobHeartbeat.objects.create(kind="import", job_id=job.pk, beat_at=timezone.now())
    report = reconcile()
    assert report.imports.resumed == report.imports.failed == []
    job.refresh_from_db()
    assert job.status == ImportJob.Status.RUNNING


def test_a_training_whose_process_died_ends_failed(db):
    dead = TrainingJob.objects.create(
        status=TrainingJob.Status.RUNNING, progress={"phase": "train", "epoch": 3, "epochs": 40}
    )
    stale_beat("training", dead.pk)
    alive = TrainingJob.objects.create(status=TrainingJob.Status.RUNNING)
    JobHeartbeat.objects.create(kind="training", job_id=alive.pk, beat_at=timezone.now())
    report = reconcile()
    assert report.trainings.failed == [dead.pk]
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.status == TrainingJob.Status.FAILED and dead.finished_at
    assert "epoch 3 of 40" in dead.error and "Start a new training" in dead.error
    assert alive.status == TrainingJob.Status.RUNNING


def test_an_embedding_import_is_marked_done_once_searchable(small_catalogue):
    small_catalogue.status = ImportJob.Status.EMBEDDING
    small_catalogue.save()
    assert reconcile().imports.finished == [small_catalogue.pk]


def test_products_of_a_running_import_are_left_to_it(small_catalogue, django_capture_on_commit_callbacks):
    """A chunk's rows are saved one by one and queued together at its end: not the reconciler's."""
    running = ImportJob.objects.create(source_name="big.csv", status=ImportJob.Status.RUNNING)
    ImportJob.objects.filter(pk=running.pk).update(created_at=timezone.now() - timedelta(hours=1))
    JobHeartbeat.objects.create(kind="import", job_id=running.pk, beat_at=timezone.now())
    Product.objects.update(updated_at=timezone.now() - timedelta(minutes=5))  # saved long after it began
    lose_vectors(4)
    with django_capture_on_commit_callbacks(execute=False):
        assert reconcile().vectors.queued == {}
    JobHeartbeat.objects.filter(job_id=running.pk).update(beat_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=False):
        assert reconcile().vectors.queued == {EmbeddingModel.active().name: 4}  # its process died
