from __future__ import annotations

import pytest
from django.urls import reverse

from catalog.search import search_by_text
from embeddings.models import EmbeddingModel, TrainingJob


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("alice", "alice@example.com", "pw"))
    return client


def test_staff_trains_and_activates_a_model_from_the_site(
    staff_client, small_catalogue, django_capture_on_commit_callbacks
):
    form = {
        "backbone": "efficientnet_lite0",
        "text": "gru",
        "dim": 64,
        "epochs": 2,
        "mining": "semi-hard",
        "margin": 0.4,
        "activate": "on",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:embeddings_trainingjob_train"), form)
    job = TrainingJob.objects.get()
    assert response.status_code == 302
    assert staff_client.get(response.url).status_code == 200
    state = staff_client.get(reverse("admin:embeddings_trainingjob_state", args=[job.pk])).json()
    assert state["status"] == "done" and len(state["history"]) == 2 and state["history"][0]["epoch"] == 1
    model = EmbeddingModel.objects.get(kind=EmbeddingModel.Kind.JOINT)
    assert state["model"] == model.name and model.image_dim == 64
    # eager workers: the re-embedding and the activation gate ran; search uses what the gate chose
    assert model.gate["decision"] in ("activated", "rejected") and model.gate["kinds"]
    if model.gate["decision"] == "activated":
        assert model.status == EmbeddingModel.Status.ACTIVE and search_by_text("bag", k=5).model.pk == model.pk
    else:
        assert model.status == EmbeddingModel.Status.READY and search_by_text("bag", k=5).model.pk != model.pk


def test_train_form_rejects_bad_values(staff_client, db):
    response = staff_client.post(
        reverse("admin:embeddings_trainingjob_train"),
        {"backbone": "vgg", "text": "gru", "dim": 0, "epochs": 2, "mining": "semi-hard", "margin": 0.4},
    )
    assert response.status_code == 200 and not TrainingJob.objects.exists()
    assert b"Select a valid choice" in response.content


def test_activate_action_switches_through_the_workers(
    staff_client, small_catalogue, django_capture_on_commit_callbacks
):
    from django.core.management import call_command

    call_command("train_embeddings", epochs=1, name="tiny", backbone="efficientnet_lite0")
    model = EmbeddingModel.objects.get(name="tiny")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:embeddings_embeddingmodel_changelist"),
            {"action": "activate_selected", "_selected_action": [model.pk]},
            follow=True,
        )
    assert b"Re-embedding the catalogue with tiny" in response.content
    model.refresh_from_db()
    assert model.status == EmbeddingModel.Status.ACTIVE


def test_activating_a_model_the_gate_refused_asks_first(
    staff_client, small_catalogue, django_capture_on_commit_callbacks
):
    from django.core.management import call_command

    call_command("train_embeddings", epochs=1, name="refused", backbone="efficientnet_lite0")
    model = EmbeddingModel.objects.get(name="refused")
    model.gate = {
        "required": True,
        "decision": "rejected",
        "reason": "not activated: worse on photo (photo) by 0.200 r@1",
        "kinds": [
            {
                "kind": "photo",
                "mode": "photo",
                "metric": "r@1",
                "queries": 20,
                "candidate": 0.5,
                "incumbent": 0.7,
                "diff": -0.2,
                "noise": 0.05,
                "verdict": "worse",
            }
        ],
    }
    model.save(update_fields=["gate"])
    url = reverse("admin:embeddings_embeddingmodel_changelist")
    warning = staff_client.post(url, {"action": "activate_selected", "_selected_action": [model.pk]})
    assert warning.status_code == 200
    assert b"The activation gate refused this model" in warning.content and b"worse on photo" in warning.content
    model.refresh_from_db()
    assert model.status == EmbeddingModel.Status.READY  # nothing happened yet
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            url, {"action": "activate_selected", "_selected_action": [model.pk], "confirm": "yes"}, follow=True
        )
    model.refresh_from_db()
    assert model.status == EmbeddingModel.Status.ACTIVE
