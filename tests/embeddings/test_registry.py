"""Training from the catalogue, registering, and switching models without mixing them."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from catalog.search import search_by_image, search_by_text
from embeddings.models import EmbeddingModel, ProductVector, TrainingJob
from embeddings.dispatch import start_activation
from embeddings.models import atomic_switch
from embeddings.registry import (
    complete_gate,
    ensure_active_model,
    finish_activation_if_complete,
    load_model,
    missing_count,
    model_ready_for_gate,
    restart_stalled_gate,
)
from embeddings.tasks import embed_batch
from embeddings.vector_index import index_name, missing_indexes


@pytest.fixture
def trained(small_catalogue, django_capture_on_commit_callbacks):
    call_command("train_embeddings", epochs=3, name="tiny-joint", backbone="efficientnet_lite0")
    return EmbeddingModel.objects.get(name="tiny-joint")


def indexes() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings_productvector'")
        return {row[0] for row in cursor.fetchall()}


def model_index_names(model: EmbeddingModel) -> set[str]:
    """The names of the model's HNSW indexes on ProductVector, of the configured storage."""
    return {index_name(column, model.pk) for column in model.column_dims()}


def test_training_registers_a_joint_model(trained):
    assert trained.kind == EmbeddingModel.Kind.JOINT and trained.status == EmbeddingModel.Status.READY
    assert trained.backbone == "efficientnet_lite0" and trained.image_dim == trained.text_dim == 256
    assert trained.text_tower == "gru"
    assert trained.training_data["products"] == 40
    assert "t2i_recall@10" in trained.metrics
    job = TrainingJob.objects.get(model=trained)
    assert job.status == TrainingJob.Status.DONE and len(job.history) >= 1
    # Another model serves: this one's indexes wait for its vectors (finish_activation_if_complete).
    assert model_index_names(trained) <= set(missing_indexes(trained.pk, trained.column_dims()))


def test_switching_never_mixes_models(trained, django_capture_on_commit_callbacks, small_image_query):
    old = EmbeddingModel.active()
    assert old is not None and old.kind == EmbeddingModel.Kind.BASELINE
    with django_capture_on_commit_callbacks(execute=False) as queued:
        start_activation(trained)
    trained.refresh_from_db()
    assert trained.status == EmbeddingModel.Status.ACTIVATING and len(queued) == 3  # 40 products / 16
    assert not model_index_names(trained) & indexes()  # built once its vectors are stored

    # Half-way: the new model has vectors for some products only.
    first_ids = list(ProductVector.objects.filter(model=old).values_list("product_id", flat=True)[:16])
    embed_batch(first_ids, trained)
    assert 0 < missing_count(trained) < 40
    assert not finish_activation_if_complete(trained.pk)
    during = search_by_text("trousers", k=40)
    assert during.model.pk == old.pk and len(during.hits) == 40  # the old model, whole catalogue
    assert search_by_image(small_image_query, k=40).model.pk == old.pk

    for callback in queued:
        callback()  # the remaining batches land; the last one switches
    trained.refresh_from_db()
    old.refresh_from_db()
    assert trained.status == EmbeddingModel.Status.ACTIVE and old.status == EmbeddingModel.Status.RETIRED
    after = search_by_text("trousers", k=40)
    assert after.model.pk == trained.pk and len(after.hits) == 40
    # The old model's vectors and indexes go only after the switch.
    assert not ProductVector.objects.filter(model=old).exists()
    assert index_name("image_vec", old.pk) not in indexes()
    assert ProductVector.objects.filter(model=trained).count() == 40
    assert missing_indexes(trained.pk, trained.column_dims()) == []


@pytest.fixture
def small_image_query():
    from PIL import Image

    from tests.conftest import SMALL_CSV

    return Image.open(next((SMALL_CSV.parent / "images").iterdir())).convert("RGB")


def test_a_joint_model_reads_the_stored_pretrained_vectors(trained):
    import numpy as np
    from django.core.files.storage import default_storage

    from catalog.models import Product
    from embeddings.registry import encoder_for
    from embeddings.tasks import pretrained_donor, stored_pretrained
    from ml.transforms import open_image

    products = list(Product.objects.order_by("pk")[:8])
    encoder = encoder_for(trained)
    assert len(stored_pretrained(pretrained_donor(trained, encoder), products)) == 8  # the active baseline's vectors
    embed_batch([p.pk for p in products], trained)
    stored = {pv.product_id: pv for pv in ProductVector.objects.filter(model=trained)}
    images = []
    for p in products:
        with default_storage.open(p.image.name, "rb") as handle:
            images.append(open_image(handle.read()))
    full = {
        **encoder.encode_image_signals(images),
        **encoder.encode_text_signals([p.text_for_embedding for p in products]),
    }
    for column in ("image_vec", "image_feat", "text_vec", "text_feat"):
        fast = np.stack([np.asarray(getattr(stored[p.pk], column), np.float32) for p in products])
        cosines = (fast * full[column]).sum(axis=1)
        assert cosines.min() > 0.995, column  # the same vectors as a full encode
    # The pretrained columns are the active baseline's own, copied by Postgres (copied_features).
    donor = {pv.product_id: pv for pv in ProductVector.objects.filter(model=EmbeddingModel.active())}
    for p in products:
        assert np.array_equal(stored[p.pk].image_feat, donor[p.pk].image_vec)
        assert np.array_equal(stored[p.pk].text_feat, donor[p.pk].text_vec)


def test_training_reuses_the_active_models_stored_features_as_its_plain_view(small_catalogue, tmp_path):
    import numpy as np

    from ml.config import ImageTowerCfg
    from ml.towers import ImageTower
    from embeddings.train_jobs import active_features, catalogue_records
    from ml.features import extract_features

    known = active_features()
    active = EmbeddingModel.active()
    records = catalogue_records()
    by_sku = known.fetch([r.sku for r in records]) if known is not None else {}
    assert known is not None and known.backbone == active.backbone and len(by_sku) == 40
    # What training would have computed itself: the same features, up to half precision.
    records = records[:8]
    tower = ImageTower(ImageTowerCfg(backbone=known.backbone, image_size=known.image_size))
    computed, _ = extract_features(records, tower, tmp_path, views=1, flip=False)
    stored = np.stack([by_sku[r.sku] for r in records])
    unit = computed[:, 0] / np.linalg.norm(computed[:, 0], axis=1, keepdims=True)
    assert (unit * stored).sum(axis=1).min() > 0.99


def test_the_encoder_runs_with_the_sites_settings(settings):
    settings.ENCODER_BATCH_SIZE = 3
    encoder = load_model({"kind": "baseline", "backbone": "efficientnet_lite0", "text": "minilm"})
    assert encoder.batch_size == 3 and encoder.torch_compile is False
    assert load_model({"kind": "baseline", "backbone": "efficientnet_lite0", "text": "minilm"}) is encoder


@pytest.mark.django_db
def test_a_baseline_is_named_after_the_backbone_it_runs(tmp_path) -> None:
    from embeddings.registry import register_baseline

    asked = register_baseline("efficientnet_lite0")
    assert asked.name == "baseline-efficientnet_lite0" and asked.backbone == "efficientnet_lite0"
    # ResNet50 weights that are not there: it runs EfficientNet-Lite0, says so in its name, and
    # is a model of its own, not the one that asked for Lite0.
    with (
        override_settings(RESNET50_WEIGHTS=str(tmp_path / "missing.pth")),
        pytest.warns(RuntimeWarning, match="resnet50 weights unavailable"),
    ):
        fell_back = register_baseline("resnet50")
    assert fell_back.name == "baseline-efficientnet_lite0-fallback" and fell_back.backbone == "efficientnet_lite0"
    assert fell_back.pk != asked.pk and fell_back.spec["requested_backbone"] == "resnet50"
    asked.refresh_from_db()
    assert asked.spec["backbone"] == "efficientnet_lite0" and "requested_backbone" not in asked.spec


@pytest.mark.django_db
def test_the_int8_query_encoder_is_a_setting_for_search_words_only(settings):
    import numpy as np

    from catalog import search_cache
    from catalog.search import text_query_vectors
    from embeddings.registry import ensure_active_model, encoder_for, query_encoder_for

    model = ensure_active_model()
    fp32 = encoder_for(model)
    assert query_encoder_for(model) is fp32  # off by default
    words = ["dark trousers", "red leather bag", "running shoes for women"]
    stored = fp32.encode_texts(words)
    settings.QUERY_ENCODER_INT8 = True
    int8 = query_encoder_for(model)
    assert int8 is not fp32 and query_encoder_for(model) is int8  # made once per process
    queries = int8.encode_texts(words)
    cosine = (stored * queries).sum(axis=1)
    assert cosine.min() > 0.9 and not np.allclose(stored, queries)
    np.testing.assert_array_equal(fp32.encode_texts(words), stored)  # the stored vectors' tower is untouched
    # a search's words go through it, one query at a time (int8 activations are scaled per
    # batch, so a query's vector depends on what it is batched with), cached apart from the
    # fp32 tower's vectors
    vector = text_query_vectors(model, words[0], ["text_vec"])["text_vec"]
    np.testing.assert_allclose(vector, int8.encode_texts(words[:1])[0], atol=1e-6)
    settings.QUERY_ENCODER_INT8 = False
    search_cache.text_vectors.hits = 0
    np.testing.assert_allclose(text_query_vectors(model, words[0], ["text_vec"])["text_vec"], stored[0], atol=1e-6)
    assert search_cache.text_vectors.hits == 0


# --- when a model's HNSW indexes are built ---------------------------------------------------


def vector_model(name: str, status: str = EmbeddingModel.Status.READY, **fields) -> EmbeddingModel:
    """A model whose vectors tests store themselves (no encoder), 8-d."""
    return EmbeddingModel.objects.create(
        name=name,
        kind="baseline",
        spec={},
        backbone="none",
        text_tower="none",
        image_dim=8,
        text_dim=8,
        status=status,
        **fields,
    )


def store_all(model: EmbeddingModel) -> None:
    """A current vector under `model` for every product (their content_hash)."""
    import numpy as np

    from catalog.models import Product

    rng = np.random.default_rng(model.pk)
    ProductVector.objects.bulk_create(
        ProductVector(
            product=p,
            model=model,
            content_hash=p.content_hash,
            image_vec=rng.normal(size=8).tolist(),
            text_vec=rng.normal(size=8).tolist(),
        )
        for p in Product.objects.all()
    )


@pytest.fixture
def serving(db):
    """Three products and an active model that has its indexes, as a site that serves."""
    from catalog.models import Product

    Product.objects.bulk_create(
        Product(sku=f"S-{i}", title=f"item {i}", price=1, image=f"products/s{i}.png", content_hash=str(i))
        for i in range(3)
    )
    active = vector_model("serving")
    store_all(active)
    atomic_switch(active)
    return active


def test_an_active_models_switch_builds_its_indexes(serving):
    assert missing_indexes(serving.pk, serving.column_dims()) == []


def test_a_model_gets_its_indexes_when_its_vectors_are_complete(serving):
    candidate = vector_model("candidate")
    start_activation(candidate)
    candidate.refresh_from_db()
    assert candidate.status == EmbeddingModel.Status.ACTIVATING
    assert not model_index_names(candidate) & indexes()  # none while its vectors are written
    store_all(candidate)
    assert finish_activation_if_complete(candidate.pk)
    candidate.refresh_from_db()
    assert candidate.status == EmbeddingModel.Status.ACTIVE
    assert missing_indexes(candidate.pk, candidate.column_dims()) == []
    assert not model_index_names(serving) & indexes()  # the retired model's went


@pytest.fixture
def gate_seen():
    """In place of the catalogue's gate: record the model's missing indexes, then pass it."""
    from catalog.gate import on_model_ready

    seen: list[list[str]] = []

    def gate(sender, model, **kwargs):
        seen.append(missing_indexes(model.pk, model.column_dims()))
        complete_gate(model, {"decision": "activated", "reason": "test"})

    model_ready_for_gate.disconnect(dispatch_uid="catalog.gate")
    model_ready_for_gate.connect(gate, dispatch_uid="test-gate")
    yield seen
    model_ready_for_gate.disconnect(dispatch_uid="test-gate")
    model_ready_for_gate.connect(on_model_ready, dispatch_uid="catalog.gate")


def test_the_gate_searches_a_model_whose_indexes_are_built(serving, gate_seen):
    candidate = vector_model("gated")
    start_activation(candidate, gate=True)
    store_all(candidate)
    assert finish_activation_if_complete(candidate.pk)
    candidate.refresh_from_db()
    assert gate_seen == [[]] and candidate.status == EmbeddingModel.Status.ACTIVE


def test_a_stalled_gate_run_again_builds_the_indexes(serving, gate_seen):
    # A gate whose worker died, on a model without indexes (however it lost them).
    candidate = vector_model(
        "stalled",
        status=EmbeddingModel.Status.EVALUATING,
        gate={"required": True, "started_at": "2000-01-01T00:00:00+00:00"},
    )
    store_all(candidate)
    assert not model_index_names(candidate) & indexes()
    assert restart_stalled_gate(candidate, stale_after=60)
    assert finish_activation_if_complete(candidate.pk)
    candidate.refresh_from_db()
    assert gate_seen == [[]] and candidate.status == EmbeddingModel.Status.ACTIVE


@pytest.mark.parametrize("path", ["start_activation", "complete_gate", "atomic_switch"])
def test_every_way_to_activate_leaves_the_indexes(db, path):
    model = vector_model("first")
    if path == "start_activation":  # a first model on an empty site (admin activate, activate_model)
        start_activation(model)
    elif path == "complete_gate":  # a gate that passes a model whose indexes someone dropped
        model.status = EmbeddingModel.Status.EVALUATING
        model.save()
        complete_gate(model, {"decision": "activated", "reason": "test"})
    else:
        atomic_switch(model)
    model.refresh_from_db()
    assert model.status == EmbeddingModel.Status.ACTIVE
    assert missing_indexes(model.pk, model.column_dims()) == []


def test_the_first_model_of_a_fresh_site_has_its_indexes(db):
    model = ensure_active_model()
    assert missing_indexes(model.pk, model.column_dims()) == []


def test_build_vector_indexes_leaves_an_activating_model_to_its_completion(serving, capsys):
    candidate = vector_model("activating")
    start_activation(candidate)
    call_command("build_vector_indexes")
    assert not model_index_names(candidate) & indexes()
    assert "indexes present for 2 model columns" in capsys.readouterr().out
