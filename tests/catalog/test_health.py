"""/healthz and the admin panel: database, workers per queue, queue depth, backlog, stuck jobs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import ImportJob
from ops.models import JobHeartbeat, WorkerHeartbeat


@pytest.fixture(autouse=True)
def fs_broker(settings, tmp_path):
    settings.REDIS_URL = ""
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path)}
    (tmp_path / "1_a.embed.msg").write_text("{}")
    return tmp_path


def live_workers(*queues: str) -> None:
    now = timezone.now()
    for queue in queues:
        WorkerHeartbeat.objects.create(nodename=f"{queue}@h", queues=queue, pid=1, started_at=now, beat_at=now)


def test_no_live_worker_is_a_503_naming_the_queue(client, small_catalogue):
    live_workers("prepare")
    WorkerHeartbeat.objects.create(
        nodename="embed@old",
        queues="embed",
        pid=2,
        started_at=timezone.now(),
        beat_at=timezone.now() - timedelta(hours=1),
    )
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["message"] == "no live worker on queue 'embed'"
    assert body["database"] == "up" and body["broker"] == "filesystem"
    assert body["queues"]["embed"] == {"waiting": 1, "unacked": 0}


def test_healthy_site_is_a_200_with_its_figures(client, small_catalogue):
    live_workers("prepare", "embed")
    stuck = ImportJob.objects.create(source_name="x", status=ImportJob.Status.RUNNING)
    JobHeartbeat.objects.create(kind="import", job_id=stuck.pk, beat_at=timezone.now() - timedelta(hours=1))
    body = client.get("/healthz").json()
    assert body["ok"] and body["message"] == "ok"
    assert body["products"] == 40 and body["not_searchable"] == 0
    assert [w["node"] for w in body["workers"]["embed"]] == ["embed@h"]
    assert [j["id"] for j in body["stuck_jobs"]["imports"]] == [stuck.pk]
    assert any("stopped with no live process" in w for w in body["warnings"])


def test_the_admin_index_shows_the_panel(admin_client, small_catalogue):
    live_workers("prepare")
    page = admin_client.get("/admin/").content.decode()
    assert 'id="health-panel"' in page and "no live worker on queue &#x27;embed&#x27;" in page
    assert "0 not yet searchable" in page


def test_a_serving_model_without_its_indexes_is_a_warning(client, small_catalogue):
    from embeddings.models import EmbeddingModel
    from embeddings.vector_index import drop_indexes, index_name

    live_workers("prepare", "embed")
    active = EmbeddingModel.active()
    assert client.get("/healthz").json()["models"][0]["missing_indexes"] == []
    drop_indexes(active.pk)
    body = client.get("/healthz").json()
    assert body["ok"]  # search still answers, by scanning every vector
    assert index_name("text_vec", active.pk) in body["models"][0]["missing_indexes"]
    assert any(f"model {active.name} lacks valid HNSW indexes" in w for w in body["warnings"])
