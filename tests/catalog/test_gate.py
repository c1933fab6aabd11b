"""The activation gate: a trained model is measured against the active one before it serves."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from django.core.management import call_command
from django.db import connection

from catalog.gate import (
    HYBRID_WITH_SYNONYMS,
    ProbePhotos,
    baseline_weights,
    decide,
    fall_back,
    fusion_kinds_of,
    in_parallel,
    run_gate,
    run_probe,
)
from catalog.models import Product
from catalog.search import PHOTO_WORDS_METHODS, photo_words_method, search
from ml.probes import Probe
from ml.transforms import open_image
from embeddings.models import EmbeddingModel, ProductVector
from embeddings.dispatch import start_activation
from embeddings.registry import register_checkpoint


@pytest.fixture
def trained(small_catalogue, django_capture_on_commit_callbacks):
    call_command("train_embeddings", epochs=3, name="tiny-joint", backbone="efficientnet_lite0")
    model = EmbeddingModel.objects.get(name="tiny-joint")
    # Probe every product: the 40-product fixture holds out only 6, too few to judge.
    model.training_data = {**model.training_data, "heldout_skus": list(Product.objects.values_list("sku", flat=True))}
    model.save(update_fields=["training_data"])
    return model


def random_heads(model: EmbeddingModel, tmp_path) -> EmbeddingModel:
    """The same model with its projection heads replaced by random weights: a bad candidate."""
    ckpt = torch.load(model.checkpoint, map_location="cpu", weights_only=True)
    generator = torch.Generator().manual_seed(1)
    for part in ("image_tower", "text_tower"):
        ckpt[part] = {
            k: torch.randn(v.shape, generator=generator) if v.is_floating_point() else v for k, v in ckpt[part].items()
        }
    path = tmp_path / "random-heads.pt"
    torch.save(ckpt, path)
    bad = register_checkpoint(path, name="random-heads", training_data=model.training_data)
    return bad


def activate(model: EmbeddingModel, gate: bool, capture) -> EmbeddingModel:
    with capture(execute=True):
        start_activation(model, gate=gate)
    model.refresh_from_db()
    return model


def test_the_gate_refuses_a_bad_candidate_and_accepts_a_good_one(trained, tmp_path, django_capture_on_commit_callbacks):
    baseline = EmbeddingModel.active()
    bad = activate(random_heads(trained, tmp_path), True, django_capture_on_commit_callbacks)
    assert bad.status == EmbeddingModel.Status.READY  # kept, not serving
    assert bad.gate["decision"] == "rejected" and bad.gate["reason"].startswith("not activated")
    assert EmbeddingModel.active().pk == baseline.pk
    assert not ProductVector.objects.filter(model=bad).exists()  # its vectors are dropped
    kinds = {(row["kind"], row["mode"]) for row in bad.gate["kinds"]}
    assert {("keyword", "hybrid"), ("paraphrase", "semantic"), ("photo", "photo")} <= kinds
    # Its fitted fusion leaves the random signals out: whatever serves is never worse than the baseline's.
    assert bad.fusion["photo"].get("photo_joint", 0.0) <= bad.fusion["photo"]["photo_pretrained"]

    # An admin may still activate it (ungated), and serve its own signals (equal weights,
    # as a model never fitted would); then a good model must beat it to replace it.
    bad = activate(bad, False, django_capture_on_commit_callbacks)
    assert bad.status == EmbeddingModel.Status.ACTIVE
    bad.fusion = {}
    bad.save(update_fields=["fusion"])
    good = activate(trained, True, django_capture_on_commit_callbacks)
    assert good.gate["decision"] == "activated", good.gate["reason"]
    assert good.status == EmbeddingModel.Status.ACTIVE
    assert any(row["verdict"] == "better" for row in good.gate["kinds"])
    assert search("trousers", k=5).model.pk == good.pk
    assert ProductVector.objects.filter(model=good).count() == Product.objects.count()


def test_decide_needs_no_kind_worse_and_one_better():
    same = {"kind": "keyword", "mode": "hybrid", "metric": "map@10", "diff": 0.0, "verdict": "same"}
    better = {**same, "kind": "photo", "diff": 0.2, "verdict": "better"}
    worse = {**same, "kind": "paraphrase", "diff": -0.1, "verdict": "worse"}
    assert decide([same, better])[0] == "activated"
    assert decide([same])[0] == "rejected"
    decision, reason = decide([better, worse])
    assert decision == "rejected" and "worse on paraphrase (hybrid) by 0.100" in reason


def test_a_gate_that_breaks_leaves_the_model_refused_not_stuck(
    trained, monkeypatch, django_capture_on_commit_callbacks
):
    def broken(*args, **kwargs):
        raise RuntimeError("probe photos unreadable")

    monkeypatch.setattr("catalog.gate.fit_fusion", broken)
    model = activate(trained, True, django_capture_on_commit_callbacks)
    assert model.status == EmbeddingModel.Status.READY
    assert "the gate failed (probe photos unreadable)" in model.gate["reason"]


def test_run_gate_reports_what_it_measured(trained, django_capture_on_commit_callbacks):
    trained.status = EmbeddingModel.Status.EVALUATING
    trained.save(update_fields=["status"])
    from embeddings.tasks import embed_batch

    embed_batch(list(Product.objects.values_list("pk", flat=True)), trained)
    report = run_gate(trained)
    assert report["decision"] in ("activated", "rejected")
    assert set(report["fusion"]) == {"hybrid", "semantic", "photo", "photo_words"}
    fit = report["fit"]["hybrid"]
    assert fit["objective"] >= max(fit["singles"].values()) - 1e-9
    assert fit["singles"]["keyword"] > 0.3  # probes copy title words: keyword search finds them
    assert report["fit"]["photo"]["singles"]["photo_pretrained"] > 0.3  # a perturbed photo finds itself
    assert report["probes"]["keyword"] > 0 and report["against"] == "baseline-efficientnet_lite0"
    # Photo + words: both ways of combining them were scored on the fit half, the better one serves,
    # and the candidate was judged on the other half in both text modes.
    words = report["fit"]["photo_words"]
    assert set(words["means"]) == set(PHOTO_WORDS_METHODS) and words["queries"] > 0
    assert words["means"][words["method"]] == max(words["means"].values())
    assert photo_words_method(trained) == words["method"] == next(iter(report["fusion"]["photo_words"]))
    judged = {row["mode"]: row for row in report["kinds"] if row["kind"] == "photo_words"}
    assert set(judged) == {"hybrid", "semantic"} and all(row["incumbent"] is not None for row in judged.values())
    # Words are also judged in hybrid mode with keyword synonyms on, as shoppers search.
    kinds = {(row["kind"], row["mode"]) for row in report["kinds"]}
    assert {("keyword", HYBRID_WITH_SYNONYMS), ("paraphrase", HYBRID_WITH_SYNONYMS)} <= kinds


def test_the_gate_measures_without_keyword_synonyms(trained, monkeypatch, django_capture_on_commit_callbacks):
    """Its paraphrase probes are WordNet alternatives, which synonyms invert (catalog/synonyms.py)."""
    import catalog.gate
    from catalog.synonyms import enabled
    from embeddings.tasks import embed_batch

    seen = []
    for name in ("fit_fusion", "fit_photo_words", "compare"):
        real = getattr(catalog.gate, name)
        monkeypatch.setattr(catalog.gate, name, lambda *a, _real=real, **k: (seen.append(enabled()), _real(*a, **k))[1])
    embed_batch(list(Product.objects.values_list("pk", flat=True)), trained)
    run_gate(trained)
    assert seen == [False, False, False] and enabled()


def test_a_hybrid_with_synonyms_probe_searches_with_them(small_catalogue):
    from catalog.synonyms import synonyms_used, without_synonyms
    from ml.probes import Probe

    model = EmbeddingModel.active()
    trousers = frozenset(Product.objects.filter(category="Trousers").values_list("sku", flat=True))
    probe = Probe("paraphrase", sku=next(iter(trousers)), relevant=trousers, text="pants")
    with without_synonyms():  # as inside the gate
        plain = search("pants", model=model, mode="hybrid", k=10)
        with_them = run_probe(model, probe, HYBRID_WITH_SYNONYMS)
        with synonyms_used(True):
            served = search("pants", model=model, mode="hybrid", k=10)
    assert "keyword" not in {name for hit in plain.hits for name in hit.sources}
    assert "keyword" in {name for hit in served.hits for name in hit.sources}  # "pants" -> trousers
    assert with_them == [hit.product.sku for hit in served.hits]
    assert fusion_kinds_of({"kind": "paraphrase", "mode": HYBRID_WITH_SYNONYMS}) == ["hybrid"]


def test_the_photo_words_method_decides_how_photo_and_words_combine(trained, django_capture_on_commit_callbacks):
    from embeddings.tasks import embed_batch

    embed_batch(list(Product.objects.values_list("pk", flat=True)), trained)
    photo = Product.objects.get(sku="SM-037")
    with photo.image.open("rb") as handle:
        image = open_image(handle.read())
    neighbours = {h.product.sku for h in search(image=image, model=trained, k=200).hits[:48]}

    trained.fusion = {**trained.fusion, "photo_words": {"composed": 1.0}}
    composed = search("dark", image=image, model=trained, mode="semantic", k=10)
    assert composed.hits and all(set(h.sources) == {"composed"} for h in composed.hits)

    trained.fusion = {**trained.fusion, "photo_words": {"rerank": 1.0}}
    assert photo_words_method(trained) == "rerank"
    reranked = search("dark", image=image, model=trained, mode="semantic", k=10)
    assert all("image" in h.sources for h in reranked.hits)  # the photo's own list ...
    assert {h.product.sku for h in reranked.hits} <= neighbours  # ... and only its neighbours

    trained.fusion = {k: v for k, v in trained.fusion.items() if k != "photo_words"}
    assert photo_words_method(trained) == "rerank"  # never fitted: re-rank, as the baseline does


def test_a_gate_whose_worker_died_is_run_again(trained, django_capture_on_commit_callbacks, settings):
    from datetime import timedelta

    from django.utils import timezone

    from embeddings.reconcile import reconcile_vectors

    settings.RECONCILE_GRACE_SECONDS = 0  # the fixture's products were saved a moment ago
    trained.status = EmbeddingModel.Status.EVALUATING
    trained.gate = {
        "required": True,
        "decision": "pending",
        "started_at": (timezone.now() - timedelta(hours=2)).isoformat(),
    }
    trained.save(update_fields=["status", "gate"])
    with django_capture_on_commit_callbacks(execute=True):
        reconcile_vectors()  # back to activating; its vectors are re-queued, and completing them runs the gate
    trained.refresh_from_db()
    assert trained.status in (EmbeddingModel.Status.ACTIVE, EmbeddingModel.Status.READY)
    assert trained.gate["decision"] in ("activated", "rejected")


def test_a_fitted_mix_judged_worse_falls_back_to_the_baselines(trained):
    from catalog.search import kind_signals

    trained.fusion = {
        "hybrid": {"text_joint": 1.0, "keyword": 0.5},
        "photo": {"photo_joint": 1.0},
        "photo_words": {"composed": 1.0},
    }
    trained.save(update_fields=["fusion"])
    rows = [
        {"kind": "keyword", "mode": "hybrid", "verdict": "worse"},
        {"kind": "photo", "mode": "photo", "verdict": "better"},
        {"kind": "nodesc", "mode": "text_photo", "verdict": "worse"},
    ]
    assert fall_back(trained, rows) == ["hybrid"]  # text_photo has nothing fitted to reset
    trained.refresh_from_db()
    assert trained.fusion["hybrid"] == baseline_weights("hybrid", kind_signals(trained, "hybrid"))
    assert trained.fusion["photo"] == {"photo_joint": 1.0}  # its gain stays
    assert fall_back(trained, rows) == []  # already the baseline's: nothing left to reset

    worse_photo_words = [{"kind": "photo_words", "mode": "semantic", "verdict": "worse"}]
    assert fall_back(trained, worse_photo_words) == ["photo", "photo_words", "semantic"]
    trained.refresh_from_db()
    assert photo_words_method(trained) == "rerank"
    assert trained.fusion["photo"] == baseline_weights("photo", kind_signals(trained, "photo"))


def backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_probe_searches_run_in_threads_in_order_and_close_their_connections(transactional_db, settings):
    settings.GATE_THREADS = 2
    threads: set[int] = set()

    def count(n: int) -> int:
        threads.add(threading.get_ident())
        with connection.cursor() as cursor:  # this thread's own connection
            cursor.execute("SELECT %s::int FROM pg_sleep(0.01)", [n])
            return cursor.fetchone()[0]

    before = backends()
    assert in_parallel(count, list(range(40))) == list(range(40))
    assert len(threads) == 2 and threading.get_ident() not in threads
    assert backends() == before  # each thread closed its connection


def test_probe_searches_run_one_at_a_time_inside_a_transaction(db, settings):
    settings.GATE_THREADS = 2
    threads = set()
    assert in_parallel(lambda n: threads.add(threading.get_ident()) or n * 2, [1, 2, 3]) == [2, 4, 6]
    assert threads == {threading.get_ident()}  # other connections could not see this test's rows


def test_a_failing_probe_search_fails_the_call(transactional_db, settings):
    settings.GATE_THREADS = 2

    def fail_on_three(n: int) -> int:
        if n == 3:
            raise ValueError("probe 3 broke")
        return n

    with pytest.raises(ValueError, match="probe 3 broke"):
        in_parallel(fail_on_three, list(range(10)))


def test_probe_photos_encoded_in_batches_equal_those_encoded_one_by_one(small_catalogue):
    model = EmbeddingModel.active()
    skus = list(Product.objects.order_by("sku").values_list("sku", flat=True)[:5])
    probes = [Probe("photo", sku, frozenset({sku}), seed=i) for i, sku in enumerate(skus)]
    ahead, one_by_one = ProbePhotos(), ProbePhotos()
    ahead.encode_ahead(model, probes)
    for probe in probes:
        batched, single = ahead.vectors[(model.pk, probe.seed)], one_by_one.vectors_for(model, probe)
        assert batched.keys() == single.keys()
        for column in single:
            np.testing.assert_allclose(batched[column], single[column], atol=2e-3)
