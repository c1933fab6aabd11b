"""Web processes load the active model, and a model being activated, before search needs it."""
from __future__ import annotations

from embeddings import warm
from embeddings.models import EmbeddingModel


def test_active_and_activating_models_are_warmed_once(small_catalogue, monkeypatch):
    monkeypatch.setattr(warm, "_warm", set())
    active = EmbeddingModel.active()
    activating = EmbeddingModel.objects.create(
        name="next", kind=active.kind, spec={**active.spec, "note": "a different spec"}, backbone=active.backbone,
        text_tower=active.text_tower, image_dim=active.image_dim, text_dim=active.text_dim,
        status=EmbeddingModel.Status.ACTIVATING,
    )
    assert warm.warm_targets() == [active.name, activating.name]
    assert warm.warm_targets() == []  # warm already: nothing loaded again


def test_a_model_that_fails_to_load_is_retried_later_not_every_poll(small_catalogue, monkeypatch):
    monkeypatch.setattr(warm, "_warm", set())
    monkeypatch.setattr(warm, "_retry_at", {})
    EmbeddingModel.objects.create(
        name="broken", kind=EmbeddingModel.Kind.JOINT, spec={"kind": "checkpoint", "path": "/nonexistent.pt"},
        backbone="x", text_tower="gru", image_dim=8, text_dim=8, status=EmbeddingModel.Status.ACTIVATING,
    )
    assert warm.warm_targets() == [EmbeddingModel.active().name]
    assert warm.warm_targets() == []
    assert len(warm._retry_at) == 1
