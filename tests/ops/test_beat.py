"""Heartbeats: a beating job is alive; one whose process stopped goes stale."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from ops.beat import beating, in_flight, job_is_alive, live_workers
from ops.models import JobHeartbeat, WorkerHeartbeat

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_job_beats_while_it_runs(settings):
    settings.HEARTBEAT_SECONDS = 0.2
    with beating("import", 41):
        first = JobHeartbeat.objects.get(kind="import", job_id=41).beat_at
        time.sleep(0.7)
        assert JobHeartbeat.objects.get(kind="import", job_id=41).beat_at > first
        assert job_is_alive("import", 41)
    last = JobHeartbeat.objects.get(kind="import", job_id=41).beat_at
    time.sleep(0.5)
    assert JobHeartbeat.objects.get(kind="import", job_id=41).beat_at == last  # stopped with the block
    assert not job_is_alive("import", 41, now=timezone.now() + timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS + 1))


def test_only_live_workers_count():
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        nodename="embed@a",
        queues="embed",
        pid=1,
        started_at=now,
        beat_at=now,
        task="embeddings.tasks.embed_products",
        task_args=[[1, 2], 3],
    )
    WorkerHeartbeat.objects.create(
        nodename="embed@dead",
        queues="embed",
        pid=2,
        started_at=now,
        beat_at=now - timedelta(hours=1),
        task="embeddings.tasks.embed_products",
        task_args=[[9], 3],
    )
    assert [w.nodename for w in live_workers()] == ["embed@a"]
    assert in_flight("embeddings.tasks.embed_products") == [[[1, 2], 3]]
