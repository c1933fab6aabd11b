"""Web processes load the active model, and a model being activated, before search needs it."""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from embeddings import registry, warm
from embeddings.models import EmbeddingModel, ProductVector
from embeddings.registry import WEB_QUEUE, cold_web_workers, wait_for_web_workers
from ops.models import WorkerHeartbeat


def test_active_and_activating_models_are_warmed_once(small_catalogue, monkeypatch):
    monkeypatch.setattr(warm, "_warm", set())
    active = EmbeddingModel.active()
    activating = EmbeddingModel.objects.create(
        name="next",
        kind=active.kind,
        spec={**active.spec, "note": "a different spec"},
        backbone=active.backbone,
        text_tower=active.text_tower,
        image_dim=active.image_dim,
        text_dim=active.text_dim,
        status=EmbeddingModel.Status.ACTIVATING,
    )
    assert warm.warm_targets() == [active.name, activating.name]
    assert warm.warm_targets() == []  # warm already: nothing loaded again


def test_a_model_that_fails_to_load_is_retried_later_not_every_poll(small_catalogue, monkeypatch):
    monkeypatch.setattr(warm, "_warm", set())
    monkeypatch.setattr(warm, "_retry_at", {})
    EmbeddingModel.objects.create(
        name="broken",
        kind=EmbeddingModel.Kind.JOINT,
        spec={"kind": "checkpoint", "path": "/nonexistent.pt"},
        backbone="x",
        text_tower="gru",
        image_dim=8,
        text_dim=8,
        status=EmbeddingModel.Status.ACTIVATING,
    )
    assert warm.warm_targets() == [EmbeddingModel.active().name]
    assert warm.warm_targets() == []
    assert len(warm._retry_at) == 1


def test_a_web_worker_reports_the_models_it_has_warm(small_catalogue, monkeypatch):
    monkeypatch.setattr(warm, "_warm", set())
    stale = timezone.now() - timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS + 1)
    WorkerHeartbeat.objects.create(nodename="web@gone:1", queues=WEB_QUEUE, pid=1, started_at=stale, beat_at=stale)
    warm.warm_targets()
    warm.report_warm()  # warm_round does both (it also closes old connections, which a test transaction refuses)
    row = WorkerHeartbeat.objects.get(nodename=warm.nodename())
    assert row.queue_list == [WEB_QUEUE] and row.warm_models == [EmbeddingModel.active().pk]
    assert not WorkerHeartbeat.objects.filter(nodename="web@gone:1").exists()  # a dead worker's row is dropped
    warm.forget_worker()
    assert not WorkerHeartbeat.objects.filter(nodename=warm.nodename()).exists()


def beating_web_worker(name: str, warm_models: list[int], seconds_ago: float = 0) -> None:
    at = timezone.now() - timedelta(seconds=seconds_ago)
    WorkerHeartbeat.objects.create(
        nodename=name, queues=WEB_QUEUE, pid=1, started_at=at, beat_at=at, warm_models=warm_models
    )


def test_the_switch_waits_for_live_web_workers_only(small_catalogue):
    model = EmbeddingModel.active()
    beating_web_worker("web@a:1", [model.pk])
    beating_web_worker("web@dead:2", [], seconds_ago=settings.HEARTBEAT_STALE_SECONDS + 1)
    WorkerHeartbeat.objects.create(
        nodename="embed@a", queues="embed", pid=3, started_at=timezone.now(), beat_at=timezone.now()
    )  # Celery workers serve no search
    assert cold_web_workers(model) == []
    assert wait_for_web_workers(model, timeout=5)
    beating_web_worker("web@b:4", [])
    assert cold_web_workers(model) == ["web@b:4"]
    started = time.monotonic()
    assert not wait_for_web_workers(model, timeout=0.6)  # bounded: a stuck worker cannot hold the switch
    assert 0.5 <= time.monotonic() - started < 5


def test_an_activation_waits_for_a_web_worker_to_warm_the_new_model(small_catalogue, settings, monkeypatch):
    """finish_activation_if_complete does not switch while a live web worker is still loading."""
    active = EmbeddingModel.active()
    new = EmbeddingModel.objects.create(
        name="next",
        kind=active.kind,
        spec=active.spec,
        backbone=active.backbone,
        text_tower=active.text_tower,
        image_dim=active.image_dim,
        text_dim=active.text_dim,
        status=EmbeddingModel.Status.ACTIVATING,
    )
    for vector in ProductVector.objects.filter(model=active):  # every product searchable under `new`
        vector.pk, vector.model = None, new
        vector.save()
    beating_web_worker("web@a:1", [active.pk])
    checks = []

    def loading_then_warm(model: EmbeddingModel) -> list[str]:
        checks.append(model.pk)
        if len(checks) == 3:  # the worker finishes loading while the switch waits
            WorkerHeartbeat.objects.filter(nodename="web@a:1").update(warm_models=[active.pk, new.pk])
        return cold_web_workers(model)

    settings.ENCODER_WARM_WAIT_SECONDS = 30
    monkeypatch.setattr(registry, "cold_web_workers", loading_then_warm)
    assert registry.finish_activation_if_complete(new.pk)
    assert checks == [new.pk] * 3  # cold twice (the switch waited), then warm
    new.refresh_from_db()
    assert new.status == EmbeddingModel.Status.ACTIVE
