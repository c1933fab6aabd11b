"""The public model pages: registry, evaluation table, curve files and the embedding map."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from embeddings.models import EmbeddingModel, EvaluationRun

pytestmark = pytest.mark.django_db


def make_model(name: str = "joint-1", **fields: object) -> EmbeddingModel:
    defaults: dict = {
        "kind": EmbeddingModel.Kind.JOINT,
        "spec": {"kind": "checkpoint"},
        "backbone": "efficientnet_lite0",
        "text_tower": "gru",
        "image_dim": 64,
        "text_dim": 64,
        "training_data": {"products": 40, "categories": 4, "params": {"backbone": "resnet50", "epochs": 3}},
        "metrics": {"epoch": 2, "t2i_recall@1": 0.25, "t2i_map@10": 0.4, "i2t_recall@1": 0.2},
    }
    defaults.update(fields)
    return EmbeddingModel.objects.create(name=name, **defaults)


def row(method: str, model: str, task: str, value: float) -> dict:
    return {
        "method": method,
        "model": model,
        "task": task,
        "queries": 10,
        "R@1": value / 4,
        "R@5": value / 2,
        "R@10": value,
        "MRR@10": value,
        "mAP@10": value,
        "P@10": value,
    }


def test_registry_lists_models_and_fallback_notes(client):
    make_model("joint-1")
    make_model(
        "baseline-x",
        kind="baseline",
        status="active",
        training_data={},
        metrics={},
        notes="ResNet50 unavailable, fell back to efficientnet_lite0",
    )
    page = client.get(reverse("embeddings:registry")).content.decode()
    assert "joint-1" in page and "baseline-x" in page
    assert "ResNet50 unavailable, fell back to efficientnet_lite0" in page
    # no notes, but the training params asked for another backbone: still said
    assert "Requested image backbone &#x27;resnet50&#x27;" in page
    assert "badge-active" in page and "badge-ready" in page
    assert "0.250" in page  # training metrics table


def test_registry_shows_activation_progress(client, small_catalogue):
    make_model("joint-2", status="activating")
    page = client.get(reverse("embeddings:registry")).content.decode()
    assert "Re-embedding the catalogue: <strong>0 / 40</strong>" in page
    assert "40 of 40 products up to date" in page  # the active baseline


def test_registry_shows_a_training_in_progress(client):
    from embeddings.models import TrainingJob

    TrainingJob.objects.create(status=TrainingJob.Status.QUEUED)
    running = TrainingJob.objects.create(
        status=TrainingJob.Status.RUNNING,
        progress={"phase": "train", "epoch": 10, "epochs": 40, "done": 10, "total": 40},
    )
    TrainingJob.objects.create(status=TrainingJob.Status.DONE, progress={"phase": "train", "done": 40, "total": 40})
    html = client.get(reverse("embeddings:registry")).content.decode()
    assert f"Training #{running.pk}: training the towers" in html
    assert 'aria-valuenow="25"' in html and "epoch 10 of at most 40" in html
    assert html.count('class="training-now"') == 2  # the queued and the running one, not the finished one
    assert "waiting for an embed worker" in html


def test_curve_is_served_only_from_models_dir(client, settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    (tmp_path / "models" / "m").mkdir(parents=True)
    inside = tmp_path / "models" / "m" / "curve.png"
    inside.write_bytes(b"\x89PNG fake")
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"\x89PNG secret")
    good = make_model("good", curve=str(inside))
    bad = make_model("bad", curve=str(tmp_path / "models" / ".." / "elsewhere.png"))
    response = client.get(reverse("embeddings:curve", args=[good.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == b"\x89PNG fake"
    assert client.get(reverse("embeddings:curve", args=[bad.pk])).status_code == 404


def test_evaluation_renders_the_run_and_highlights_the_best(client):
    make_model("joint-1")
    run = EvaluationRun.objects.create(
        queries_file="demo/eval/queries.jsonl",
        n_text_queries=10,
        n_image_queries=5,
        results={
            "products": 40,
            "rows": [
                row("keyword (Postgres full-text)", "-", "text→image", 0.2),
                row("semantic (text→photo)", "joint-1", "text→image", 0.6),
                row("photo→photo", "joint-1", "image→image", 0.7),
            ],
        },
    )
    page = client.get(reverse("embeddings:evaluation")).content.decode()
    assert f"Run <strong>#{run.pk}</strong>" in page
    assert "demo/eval/queries.jsonl" in page
    assert "text→image" in page and "image→image" in page
    assert '<td class="num best"><strong title="best in this column">0.600</strong>' in page
    assert '<td class="num">0.200</td>' in page  # the keyword row is not highlighted
    assert "beats keyword (Postgres full-text) on mAP@10: 0.600 vs 0.200" in page
    assert "<svg" in page and "<script" not in page.split("<footer")[0].split("</main>")[0]


def test_evaluation_selects_older_runs_and_explains_when_empty(client):
    assert (
        "python manage.py evaluate demo/eval/queries.jsonl"
        in client.get(reverse("embeddings:evaluation")).content.decode()
    )
    old = EvaluationRun.objects.create(
        queries_file="old.jsonl", results={"rows": [row("keyword (Postgres full-text)", "-", "text→image", 0.1)]}
    )
    EvaluationRun.objects.create(queries_file="new.jsonl", results={"rows": []})
    assert "new.jsonl" in client.get(reverse("embeddings:evaluation")).content.decode()
    page = client.get(reverse("embeddings:evaluation") + f"?run={old.pk}").content.decode()
    assert "<code>old.jsonl</code>" in page
    assert client.get(reverse("embeddings:evaluation") + "?run=99999").status_code == 404


def test_map_json_places_image_and_text_points_by_category(client, small_catalogue, settings):
    from catalog.models import Product

    model = EmbeddingModel.active()
    response = client.get(reverse("embeddings:map-json"))
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "ready" and data["model"]["name"] == model.name
    categories = set(Product.objects.values_list("category", flat=True))
    assert set(data["categories"]) == categories
    assert len(data["products"]) == 40
    # the baseline's photo and text vectors live in different spaces: two panels
    assert not data["joint"] and [len(p["points"]) for p in data["panels"]] == [40, 40]
    assert {p["kind"] for p in data["panels"][0]["points"]} == {"image"}
    assert {p["kind"] for p in data["panels"][1]["points"]} == {"text"}
    point = data["panels"][0]["points"][0]
    product = data["products"][point["p"]]
    assert point["category"] == product["category"]
    assert 0 <= point["x"] <= 1 and 0 <= point["y"] <= 1
    assert product["url"] == Product.objects.get(pk=product["id"]).get_absolute_url()
    # cached under DATA_DIR/maps: the second request reads the file
    cached = list((settings.DATA_DIR / "maps").glob(f"model{model.pk}-*.json"))
    assert len(cached) == 1
    assert json.loads(cached[0].read_text())["panels"] == data["panels"]


def test_map_of_a_joint_model_is_one_picture(small_catalogue):
    import numpy as np

    from ml.maps import MapInput, build_map

    rng = np.random.default_rng(0)
    items = [{"id": i, "title": f"p{i}", "category": "ab"[i % 2], "url": "/", "thumb": ""} for i in range(30)]
    data = build_map(MapInput(1, True, items, ["h"] * 30, rng.normal(size=(30, 8)), rng.normal(size=(30, 8))))
    assert data["joint"] and len(data["panels"]) == 1
    kinds = [p["kind"] for p in data["panels"][0]["points"]]
    assert kinds.count("image") == 30 and kinds.count("text") == 30
    sampled = build_map(
        MapInput(1, True, items, ["h"] * 30, rng.normal(size=(30, 8)), rng.normal(size=(30, 8))), max_points=10
    )
    assert sampled["sampled"] and len(sampled["products"]) == 10


def test_map_page_without_a_model_says_so(client):
    page = client.get(reverse("embeddings:map")).content.decode()
    assert "No active model" in page
    assert client.get(reverse("embeddings:map-json")).status_code == 404
