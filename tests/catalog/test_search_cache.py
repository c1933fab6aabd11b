"""The search caches (catalog/search_cache.py): repeated searches are served from memory, and a
catalogue write or a model switch is never hidden by a cached page.

Real Postgres with real commits (transactional_db): the catalogue version is bumped inside the
writing transaction, which only a committed write shows to another connection.
"""

from __future__ import annotations

import json
import pickle
import shutil
import threading
import uuid

import numpy as np
import pytest
import redis
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import get_script_prefix, set_script_prefix
from django.utils import timezone
from PIL import Image

from catalog import search_cache
from catalog.models import Product, SearchLog
from embeddings.models import EmbeddingModel, ProductVector
from tests.conftest import SMALL_CSV

# What cached_search renders a page's hits for (their URLs name the site).
REQUEST = RequestFactory().get("/api/search")


@pytest.fixture
def committed_catalogue(transactional_db, settings):
    """The 40-product fixture catalogue, imported, embedded and committed."""
    from catalog.ingest import run_import
    from catalog.models import ImportJob
    from embeddings.registry import ensure_active_model

    settings.SEARCH_RATE_LIMIT = settings.PHOTO_SEARCH_RATE_LIMIT = ""
    ensure_active_model()
    run_import(ImportJob.objects.create(source_name="small", csv_path=str(SMALL_CSV)))
    assert ProductVector.objects.count() == Product.objects.count() == 40
    search_cache.clear_all()
    yield
    search_cache.clear_all()


def import_csv(tmp_path, text: str) -> None:
    from catalog.ingest import run_import
    from catalog.models import ImportJob

    folder = tmp_path / "more"
    shutil.copytree(SMALL_CSV.parent, folder)
    path = folder / "catalogue.csv"
    path.write_text("sku,title,description,category,price,image\n" + text)
    run_import(ImportJob.objects.create(source_name="more", csv_path=str(path)))


def skus(body: dict) -> list[str]:
    return [r["sku"] for r in body["results"]]


def test_version_moves_with_every_catalogue_write_and_only_then(committed_catalogue):
    v0 = search_cache.catalogue_version()
    SearchLog.objects.create(
        id=uuid.uuid4(), created_at=timezone.now(), kind="text", text="shoes", mode="semantic", results=3, took_ms=1.0
    )
    assert search_cache.catalogue_version() == v0  # logging a search changes no result
    product = Product.objects.first()
    Product.objects.filter(pk=product.pk).update(price=product.price + 1)
    v1 = search_cache.catalogue_version()
    assert v1 > v0
    ProductVector.objects.filter(product=product).delete()
    v2 = search_cache.catalogue_version()
    assert v2 > v1
    EmbeddingModel.objects.filter(pk=EmbeddingModel.active().pk).update(notes="touched")
    assert search_cache.catalogue_version() > v2


def test_an_uncommitted_write_does_not_move_the_version_another_connection_reads(committed_catalogue):
    seen: dict[str, int | None] = {}
    written, read = threading.Event(), threading.Event()

    def writer() -> None:
        try:
            with transaction.atomic():
                Product.objects.filter(sku="SM-001").update(title="Changed title")
                written.set()
                read.wait(10)
        finally:
            connection.close()

    before = search_cache.catalogue_version()
    thread = threading.Thread(target=writer)
    thread.start()
    assert written.wait(10)
    seen["during"] = search_cache.catalogue_version()
    read.set()
    thread.join(10)
    seen["after"] = search_cache.catalogue_version()
    assert seen["during"] == before
    assert seen["after"] > before


def test_a_repeated_search_is_served_from_memory(committed_catalogue, client):
    params = {"q": "dark trousers", "k": 5, "mode": "hybrid"}
    response = client.get("/api/search", params)
    assert "result_pages=miss" in response["X-Search-Cache"]
    first = response.json()
    hits = search_cache.result_pages.hits
    response = client.get("/api/search", params)
    assert response["X-Search-Cache"] == "result_pages=hit"
    second = response.json()
    assert search_cache.result_pages.hits == hits + 1
    assert second["results"] == first["results"]
    assert second["query_id"] != first["query_id"]  # each answered search is still logged
    assert SearchLog.objects.count() == 2
    # another page, filter or mode is another entry
    client.get("/api/search", {**params, "page": 2})
    client.get("/api/search", {**params, "category": "Trousers"})
    assert search_cache.result_pages.hits == hits + 1


def test_a_new_import_is_never_hidden_by_a_cached_page(committed_catalogue, client, tmp_path):
    params = {"q": "zanzibarite", "mode": "keyword"}
    assert skus(client.get("/api/search", params).json()) == []
    assert skus(client.get("/api/search", params).json()) == []  # now cached
    import_csv(tmp_path, "NEW-1,Zanzibarite sneakers,Zanzibarite pair of sneakers.,Sneakers,50.00,images/SM-001.png\n")
    assert skus(client.get("/api/search", params).json()) == ["NEW-1"]
    # a semantic page cached before the new product had a vector shows it once it has one
    words = {"q": "Zanzibarite sneakers", "mode": "semantic", "k": 40}
    assert "NEW-1" in skus(client.get("/api/search", words).json())


def test_a_price_change_shows_at_once(committed_catalogue, client):
    params = {"q": "sneakers", "mode": "keyword", "k": 40}
    body = client.get("/api/search", params).json()
    sku = body["results"][0]["sku"]
    client.get("/api/search", params)
    Product.objects.filter(sku=sku).update(price=1234.5)
    again = client.get("/api/search", params).json()
    assert next(r["price"] for r in again["results"] if r["sku"] == sku) in (1234.5, "1234.50")


def test_a_model_switch_is_never_hidden_by_a_cached_page(committed_catalogue, client):
    params = {"q": "dark trousers", "mode": "semantic", "k": 5}
    old = EmbeddingModel.active()
    before = client.get("/api/search", params).json()
    assert before["model"] == old.name and before["results"]
    client.get("/api/search", params)
    new = EmbeddingModel.objects.get(pk=old.pk)
    new.pk, new.name, new.status = None, "switched-to", EmbeddingModel.Status.READY
    new.save()
    with transaction.atomic():  # the switch: a model with no vectors yet
        EmbeddingModel.objects.filter(pk=old.pk).update(status=EmbeddingModel.Status.RETIRED)
        EmbeddingModel.objects.filter(pk=new.pk).update(status=EmbeddingModel.Status.ACTIVE)
    after = client.get("/api/search", params).json()
    assert after["model"] == "switched-to"
    assert after["results"] == []
    EmbeddingModel.objects.filter(pk=new.pk).update(status=EmbeddingModel.Status.RETIRED)
    assert client.get("/api/search", params).status_code == 503  # no active model: not a cached page


def test_pages_are_not_cached_inside_a_transaction(committed_catalogue):
    from catalog.api import cached_search

    with transaction.atomic():
        cached_search("dark trousers", request=REQUEST, mode="semantic", k=5)
        cached_search("dark trousers", request=REQUEST, mode="semantic", k=5)
    assert search_cache.result_pages.stats() == {"hits": 0, "misses": 0, "entries": 0}


def test_result_cache_off_and_expiry(committed_catalogue, settings):
    from catalog.api import cached_search

    settings.SEARCH_RESULT_CACHE_SIZE = 0
    cached_search("dark trousers", request=REQUEST, mode="semantic", k=5)
    cached_search("dark trousers", request=REQUEST, mode="semantic", k=5)
    assert len(search_cache.result_pages) == 0
    settings.SEARCH_RESULT_CACHE_SIZE, settings.SEARCH_RESULT_CACHE_SECONDS = 2, 3600
    for q in ("dark trousers", "red bag", "sneakers"):
        cached_search(q, request=REQUEST, mode="semantic", k=5)
    assert len(search_cache.result_pages) == 2  # the oldest went
    settings.SEARCH_RESULT_CACHE_SECONDS = 0.000001
    hits = search_cache.result_pages.hits
    cached_search("sneakers", request=REQUEST, mode="semantic", k=5)
    assert search_cache.result_pages.hits == hits  # expired: searched again


def test_query_vectors_are_cached_per_model_and_read_only(committed_catalogue):
    from catalog.search import image_query_vectors, text_query_vectors
    from embeddings.registry import encoder_for

    model = EmbeddingModel.active()
    first = text_query_vectors(model, "dark trousers", ["text_vec"])
    assert search_cache.text_vectors.stats()["misses"] == 1
    again = text_query_vectors(model, "dark trousers", ["text_vec"])
    assert search_cache.text_vectors.stats()["hits"] == 1
    assert again["text_vec"] is first["text_vec"]
    fresh = encoder_for(model).encode_texts(["dark trousers"])[0]
    np.testing.assert_allclose(again["text_vec"], fresh, atol=1e-6)
    with pytest.raises(ValueError):
        again["text_vec"][0] = 0.0  # shared by later searches: never written
    other = EmbeddingModel.objects.get(pk=model.pk)
    other.pk = model.pk + 1000  # another model's vectors are another entry
    assert search_cache.model_key(other) != search_cache.model_key(model)

    red, blue = Image.new("RGB", (32, 32), (200, 30, 30)), Image.new("RGB", (32, 32), (30, 30, 200))
    a = image_query_vectors(model, red)
    b = image_query_vectors(model, red.copy())  # the same pixels: a hit
    c = image_query_vectors(model, blue)
    assert search_cache.photo_vectors.stats() == {"hits": 1, "misses": 2, "entries": 2}
    assert a["image_vec"] is b["image_vec"]
    assert not np.allclose(a["image_vec"], c["image_vec"])


def test_a_new_synonym_is_never_hidden_by_a_cached_page(committed_catalogue, client):
    from catalog.models import Synonym

    params = {"q": "zorblax", "mode": "keyword", "k": 40}
    assert skus(client.get("/api/search", params).json()) == []
    assert skus(client.get("/api/search", params).json()) == []  # now cached
    Synonym(term="zorblax", word="trousers").save()  # as the admin saves it
    found = skus(client.get("/api/search", params).json())
    assert found and set(found) <= set(Product.objects.filter(category="Trousers").values_list("sku", flat=True))


# --- the shared level (Redis) -------------------------------------------------------------


@pytest.fixture
def shared_redis(settings):
    """The search caches' shared level on the machine's real Redis, under a key prefix of this
    test's own (deleted after)."""
    url = settings.REDIS_URL or "redis://127.0.0.1:6379/15"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"the shared search cache tests need Redis at {url}: {exc}")
    prefix = f"test-search-{uuid.uuid4().hex}"
    settings.CACHES = {
        **settings.CACHES,
        "search": {"BACKEND": "searchsite.cache.RedisCache", "LOCATION": url, "KEY_PREFIX": prefix},
    }
    settings.SEARCH_SHARED_CACHE = True
    yield client
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def another_worker() -> None:
    """What another web worker sees: its own, empty, in-process caches (Redis is shared)."""
    for cache in search_cache.CACHES.values():
        cache.clear()
    search_cache.word_lookups.clear()


def test_a_page_one_worker_searched_serves_another_from_redis(committed_catalogue, shared_redis, client):
    params = {"q": "dark trousers", "k": 5, "mode": "hybrid"}
    first = client.get("/api/search", params)
    assert "result_pages=miss" in first["X-Search-Cache"]
    assert any(b":result_pages:" in key for key in shared_redis.keys("*"))
    another_worker()
    with CaptureQueriesContext(connection) as queries:
        second = client.get("/api/search", params)
    assert second["X-Search-Cache"] == "result_pages=hit"
    assert search_cache.result_pages.shared_hits == 1
    assert second.json()["results"] == first.json()["results"]
    # the page came whole (products, their photos): only the version and the search log
    assert not [q for q in queries.captured_queries if "catalog_product" in q["sql"]]
    # now in this worker's own cache too
    assert client.get("/api/search", params)["X-Search-Cache"] == "result_pages=hit"
    assert search_cache.result_pages.shared_hits == 1
    # a catalogue write is never hidden by the shared page either
    sku = first.json()["results"][0]["sku"]
    Product.objects.filter(sku=sku).update(price=1234.5)
    another_worker()
    third = client.get("/api/search", params)
    assert "result_pages=miss" in third["X-Search-Cache"]
    assert next(r["price"] for r in third.json()["results"] if r["sku"] == sku) == 1234.5


def test_a_page_from_redis_answers_what_a_fresh_search_answers(committed_catalogue, shared_redis, client, settings):
    params = {"q": "dark trousers", "k": 8, "mode": "hybrid"}
    client.get("/api/search", params)
    another_worker()
    from_redis = client.get("/api/search", params)
    assert from_redis["X-Search-Cache"] == "result_pages=hit" and search_cache.result_pages.shared_hits == 1
    # Redis holds the page's hits as rendered JSON, not its products
    (key,) = shared_redis.keys(f"{settings.CACHES['search']['KEY_PREFIX']}:*:result_pages:*")
    made, page = pickle.loads(shared_redis.get(key))
    assert page.hits == [] and json.loads(page.rendered) == from_redis.json()["results"]
    settings.SEARCH_RESULT_CACHE_SIZE = 0
    fresh = client.get("/api/search", params)
    assert "result_pages" not in fresh["X-Search-Cache"]
    cached_body, fresh_body = from_redis.json(), fresh.json()
    for body in (cached_body, fresh_body):
        assert body.pop("query_id") and body.pop("took_ms") >= 0
    assert cached_body == fresh_body
    assert len(cached_body["results"]) == 8 and cached_body["results"][0]["explanation"]
    for response in (from_redis, fresh):  # what JsonResponse would send for the whole body
        assert response["Content-Type"] == "application/json"
        assert response.content == json.dumps(json.loads(response.content), cls=DjangoJSONEncoder).encode()


def test_a_cached_page_names_the_site_it_was_asked_at(committed_catalogue, client):
    params = {"q": "dark trousers", "k": 3, "mode": "hybrid"}
    for _ in range(2):  # the second time from the cache
        for host in ("localhost", "127.0.0.1"):
            body = client.get("/api/search", params, HTTP_HOST=host).json()
            assert {r["url"].split("/")[2] for r in body["results"]} == {host}
            assert {r["image_url"].split("/")[2] for r in body["results"]} == {host}
    assert search_cache.result_pages.stats()["hits"] == 2


def test_a_cached_page_names_the_script_prefix_it_was_asked_under(committed_catalogue, client):
    # a site served under two prefixes (two SCRIPT_NAMEs behind one proxy) shares the caches
    params = {"q": "dark trousers", "k": 3, "mode": "hybrid"}
    before = get_script_prefix()
    try:
        for _ in range(2):  # the second time from the cache
            for prefix in ("/", "/shop/"):
                set_script_prefix(prefix)  # what the WSGI handler sets from SCRIPT_NAME
                body = client.get("/api/search", params).json()
                assert {r["url"].rsplit("p/", 1)[0] for r in body["results"]} == {"http://testserver" + prefix}
    finally:
        set_script_prefix(before)
    assert search_cache.result_pages.stats()["hits"] == 2


def test_query_vectors_are_shared_and_read_only(committed_catalogue, shared_redis):
    from catalog.search import text_query_vectors

    model = EmbeddingModel.active()
    first = text_query_vectors(model, "dark trousers", ["text_vec"])
    another_worker()
    again = text_query_vectors(model, "dark trousers", ["text_vec"])
    assert search_cache.text_vectors.stats() == {"hits": 1, "misses": 0, "entries": 1}
    assert search_cache.text_vectors.shared_hits == 1
    np.testing.assert_array_equal(again["text_vec"], first["text_vec"])
    with pytest.raises(ValueError):
        again["text_vec"][0] = 0.0


def test_a_page_from_another_database_is_never_read(committed_catalogue, shared_redis, client):
    from catalog.api import cached_search

    cached_search("dark trousers", request=REQUEST, mode="semantic", k=5)
    identity = search_cache.database_identity()
    assert identity == search_cache.database_identity() and all(isinstance(x, int) for x in identity)
    another_worker()
    # the same catalogue version in another database (one recreated, counting from 0 again)
    connection._vitrine_identity = (connection.connection, (identity[0], identity[1] + 1))
    cached_search("dark trousers", request=REQUEST, mode="semantic", k=5)
    assert search_cache.result_pages.stats()["misses"] == 1 and search_cache.result_pages.shared_hits == 0


def test_a_redis_outage_costs_the_shared_cache_not_the_search(committed_catalogue, settings, client):
    settings.SEARCH_SHARED_CACHE = True
    settings.CACHES = {
        **settings.CACHES,
        "search": {
            "BACKEND": "searchsite.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
        },
    }
    params = {"q": "dark trousers", "k": 5, "mode": "hybrid"}
    first = client.get("/api/search", params)
    assert first.status_code == 200 and first.json()["results"]
    assert search_cache.shared_cache() is None  # left alone for SHARED_RETRY_SECONDS
    assert client.get("/api/search", params)["X-Search-Cache"] == "result_pages=hit"  # the worker's own


def test_the_shared_cache_is_a_setting(committed_catalogue, shared_redis, settings):
    assert search_cache.shared_cache() is not None
    settings.SEARCH_SHARED_CACHE = False
    assert search_cache.shared_cache() is None


def test_word_lookups_are_kept_per_catalogue_version(committed_catalogue, client):
    from catalog.models import Synonym

    params = {"q": "trousrs zorblax", "mode": "hybrid", "k": 5}
    client.get("/api/search", params)
    with CaptureQueriesContext(connection) as queries:
        client.get("/api/search", {**params, "page": 2})  # another page: the same words
    looked_up = [q["sql"] for q in queries.captured_queries if "catalog_synonym" in q["sql"] or "unnest" in q["sql"]]
    assert looked_up == []
    Synonym(term="zorblax", word="trousers").save()  # a new version: looked up again
    with CaptureQueriesContext(connection) as queries:
        body = client.get("/api/search", {**params, "mode": "keyword"}).json()
    assert [q for q in queries.captured_queries if "catalog_synonym" in q["sql"]]
    assert body["results"]
