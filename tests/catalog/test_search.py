"""search(): modes, filters, min_score, sort, paging, keyword search, composed queries and the
filtered HNSW scan, on real Postgres + pgvector and the real baseline encoder."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from django.db import connection, transaction
from django.test import TestCase, override_settings

from catalog.filters import NO_FILTERS
from catalog.keyword import any_words_query, keyword_search
from catalog.models import Product
from catalog.search import (
    Filters,
    browse,
    composed_vector,
    encode_queries_ahead,
    reuse_query_vectors,
    search,
    search_by_image,
    search_by_text,
    similar_products,
    text_query_vector,
    vector_literal,
    vector_search,
    vector_search_settings,
    vector_search_sql,
)
from embeddings.models import EmbeddingModel, ProductVector
from tests.conftest import SMALL_CSV


@pytest.fixture(scope="module")
def catalogue(django_db_setup, django_db_blocker, tmp_path_factory):
    """The 40-product fixture, imported and embedded once per module inside a transaction
    that is rolled back afterwards; each test runs in a savepoint inside it."""
    from catalog.ingest import run_import
    from catalog.models import ImportJob
    from embeddings.registry import ensure_active_model
    from searchsite.celery import app

    app.conf.task_always_eager = True
    media = tmp_path_factory.mktemp("catalogue-media")
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=media):
        with transaction.atomic():
            ensure_active_model()
            job = ImportJob.objects.create(source_name="small", csv_path=str(SMALL_CSV))
            with TestCase.captureOnCommitCallbacks(execute=True):
                run_import(job)
            yield media
            transaction.set_rollback(True)


def product_image(sku: str, media):
    from PIL import Image

    return Image.open(media / Product.objects.get(sku=sku).image.name).convert("RGB")


def store_vectors(model, vectors, rare: set[int], name: str) -> list:
    """Products "<name> i" (category "Rare" for i in `rare`, else "Common") with `vectors` as
    both their image and text vectors under `model`; FK checks made immediate so that an
    HNSW index can be built in the same transaction."""
    products = Product.objects.bulk_create(
        Product(
            sku=f"{name[0].upper()}-{i:05d}",
            title=f"{name} {i}",
            category="Rare" if i in rare else "Common",
            price=Decimal("10.00"),
            image=f"products/{name[0]}{i}.png",
            content_hash=str(i),
        )
        for i in range(len(vectors))
    )
    ProductVector.objects.bulk_create(
        ProductVector(
            product=p,
            model=model,
            image_vec=v.tolist(),
            text_vec=v.tolist(),
            content_hash=str(i),
            category=p.category,
            price=p.price,
        )
        for i, (p, v) in enumerate(zip(products, vectors, strict=True))
    )
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # deferred FK checks block CREATE INDEX
    return products


def skus(result) -> list[str]:
    return [h.product.sku for h in result.hits]


def test_modes_all_answer_and_say_which(catalogue, db):
    for mode in ("hybrid", "semantic", "keyword"):
        result = search("dark trousers", mode=mode, k=5)
        assert result.mode == mode
        assert len(result.hits) == 5
        assert all(h.product.category == "Trousers" for h in result.hits[:3]), mode
        scores = [h.score for h in result.hits]
        assert scores == sorted(scores, reverse=True)


def test_hybrid_fuses_both_lists(catalogue, db):
    result = search("dark trousers", mode="hybrid", k=10)
    assert all(set(h.sources) <= {"text_minilm", "keyword"} for h in result.hits)
    assert any(set(h.sources) == {"text_minilm", "keyword"} for h in result.hits)
    assert 0 < result.hits[-1].score <= result.hits[0].score <= 1.0


def test_default_mode_comes_from_settings(catalogue, db, settings):
    settings.SEARCH_DEFAULT_MODE = "keyword"
    assert search("bag", k=3).mode == "keyword"


def test_words_not_in_the_catalogue_still_find_by_meaning(catalogue, db):
    assert keyword_search("zzyzx qwerty", 10) == []
    assert search("zzyzx qwerty", mode="keyword").hits == []
    result = search("zzyzx qwerty", mode="hybrid", k=5)
    assert len(result.hits) == 5
    assert all(set(h.sources) == {"text_minilm"} for h in result.hits)


def test_keyword_ranks_all_words_above_some_words(catalogue, db):
    ranked = keyword_search("dark bag", 40)
    products = Product.objects.in_bulk([pid for pid, _ in ranked])
    full = [s >= 0.5 for _, s in ranked]
    assert full == sorted(full, reverse=True)  # all-word matches first
    first = products[ranked[0][0]]
    assert first.category == "Bags" and "dark" in (first.title + first.description).lower()
    # "ankle" is nowhere in the catalogue: the other words still match
    assert keyword_search("dark ankle bag", 5)
    assert any_words_query("dark ankle bag") == "dark or ankle or bag"
    assert any_words_query('"dark bag"') is None
    assert any_words_query("bag -dark") is None


def every_match_ranked(query: str, limit: int, filters: Filters) -> list[tuple[int, float]]:
    """The oracle: every partial match ranked, as keyword search did before it learnt to stop
    at `limit` all-word matches."""
    from catalog.keyword import tsqueries

    where, params = filters.sql("p")
    strict, strict_params, loose, loose_params = tsqueries(query)
    sql = f"""
        WITH q AS (SELECT {strict} AS strict, {loose} AS loose)
        SELECT p.id, (CASE WHEN p.search_doc @@ q.strict THEN 0.5 ELSE 0.0 END)
                     + 0.5 * ts_rank_cd(p.search_doc, q.loose, 32) AS score
        FROM catalog_product p, q WHERE p.search_doc @@ ({loose}){where}
        ORDER BY score DESC, p.id LIMIT %s"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [*strict_params, *loose_params, *loose_params, *params, limit])
        return [(pid, float(score)) for pid, score in cursor.fetchall()]


@pytest.mark.parametrize(
    "query", ["dark bag", "dark", "dark ankle bag", "blue denim jacket", '"dark bag"', "bag -dark"]
)
@pytest.mark.parametrize("limit", [1, 2, 5, 200])
def test_keyword_search_that_stops_at_enough_all_word_matches_ranks_as_ranking_every_match(catalogue, db, query, limit):
    for filters in (NO_FILTERS, Filters(max_price=Decimal("60"))):
        assert keyword_search(query, limit, filters) == every_match_ranked(query, limit, filters)


def test_keyword_search_honours_filters(catalogue, db):
    ranked = keyword_search("dark", 40, Filters(category="Trousers", max_price=Decimal("60")))
    assert ranked
    for product in Product.objects.filter(pk__in=[pid for pid, _ in ranked]):
        assert product.category == "Trousers" and product.price <= 60


def test_filters_sql():
    where, params = Filters("Bags", Decimal("10"), Decimal("20")).sql("pv")
    assert where == " AND pv.category = %s AND pv.price >= %s AND pv.price <= %s"
    assert params == ["Bags", Decimal("10"), Decimal("20")]
    assert Filters().sql("p") == ("", [])


@pytest.mark.parametrize("mode", ["hybrid", "semantic", "keyword"])
def test_category_and_price_filters(catalogue, db, mode):
    filters = Filters(category="Sneakers", min_price=Decimal("50"), max_price=Decimal("100"))
    result = search("dark", mode=mode, filters=filters, k=24)
    expected = Product.objects.filter(category="Sneakers", price__gte=50, price__lte=100).count()
    assert 0 < len(result.hits) <= expected
    assert all(h.product.category == "Sneakers" and 50 <= h.product.price <= 100 for h in result.hits)
    if mode == "semantic":
        assert len(result.hits) == expected


def test_min_score_cuts_off(catalogue, db):
    everything = search("light bag", mode="semantic", k=40)
    cutoff = everything.hits[5].score
    result = search("light bag", mode="semantic", k=40, min_score=cutoff)
    assert len(result.hits) == result.total_candidates >= 6
    assert all(h.score >= cutoff for h in result.hits)
    assert search("light bag", mode="semantic", min_score=1.0).hits == []


def test_paging_walks_the_same_ranking(catalogue, db):
    whole = search("sneakers", mode="hybrid", k=30)
    page1 = search("sneakers", mode="hybrid", k=10, offset=0)
    page2 = search("sneakers", mode="hybrid", k=10, offset=10)
    assert skus(page1) + skus(page2) == skus(whole)[:20]
    assert page1.has_next and page1.total_candidates == 40
    last = search("sneakers", mode="hybrid", k=10, offset=30)
    assert len(last.hits) == 10 and not last.has_next
    assert search("sneakers", mode="hybrid", k=10, offset=40).hits == []


@pytest.mark.parametrize("sort", ["price_asc", "price_desc"])
def test_sort_by_price_reorders_the_relevant_set(catalogue, db, sort):
    result = search("trousers", mode="keyword", k=5, sort=sort)
    relevant = search("trousers", mode="keyword", k=40)
    prices = [h.product.price for h in result.hits]
    assert prices == sorted(prices, reverse=sort == "price_desc")
    expected = sorted((h.product.price for h in relevant.hits), reverse=sort == "price_desc")[:5]
    assert prices == expected
    page2 = search("trousers", mode="keyword", k=5, offset=5, sort=sort)
    assert [h.product.price for h in page2.hits] == sorted(
        (h.product.price for h in relevant.hits), reverse=sort == "price_desc"
    )[5:10]


@pytest.mark.parametrize("sort", ["price_asc", "price_desc"])
def test_sort_by_price_keeps_relevance_order_among_equal_prices(catalogue, db, sort):
    relevant = search("dark", mode="hybrid", k=40)
    # ties made on purpose: the candidates in threes at one price each
    for i, hit in enumerate(relevant.hits):
        Product.objects.filter(pk=hit.product.pk).update(price=10 + i // 3)
    assert len(relevant.hits) == relevant.total_candidates > 20
    by_price = sorted(enumerate(relevant.hits), key=lambda ih: ih[0] // 3, reverse=sort == "price_desc")
    expected = [h.product.sku for _, h in by_price]  # sorted() is stable, reverse too
    pages = [search("dark", mode="hybrid", k=7, offset=offset, sort=sort) for offset in range(0, 40, 7)]
    assert [h.product.sku for page in pages for h in page.hits] == expected
    assert pages[0].total_candidates == relevant.total_candidates
    assert all(h.explanation for page in pages for h in page.hits)


def test_bad_arguments_are_refused(catalogue, db):
    with pytest.raises(ValueError, match="mode"):
        search("x", mode="fuzzy")
    with pytest.raises(ValueError, match="sort"):
        search("x", sort="cheapest")
    with pytest.raises(ValueError, match="nothing to search"):
        search("  ")


def test_photo_search_finds_the_product_itself(catalogue, db):
    image = product_image("SM-010", catalogue)
    result = search(image=image, k=5)
    assert result.hits[0].product.sku == "SM-010"
    assert result.hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert set(result.hits[0].sources) == {"photo_pretrained"}
    assert skus(search_by_image(image, k=5)) == skus(result)


def test_composed_query_on_the_baseline_reranks_photo_neighbours(catalogue, db):
    model = EmbeddingModel.active()
    assert not model.joint
    image = product_image("SM-037", catalogue)  # a pale bag
    photo_only = search(image=image, k=40)
    composed = search("dark", image=image, mode="hybrid", k=10)
    neighbours = set(skus(photo_only))
    assert set(skus(composed)) <= neighbours  # still the photo's neighbours
    assert all("image" in h.sources for h in composed.hits)
    assert skus(composed) != skus(photo_only)[:10]  # ... re-ranked by the words
    top = composed.hits[0].product
    assert top.category == "Bags"
    assert "dark" in (top.title + top.description).lower() or "deep" in (top.title + top.description).lower()


def test_composed_vector_is_normalised_and_leans_to_the_words():
    rng = np.random.default_rng(0)
    img, txt = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 16)).astype(np.float32))
    v = composed_vector(img, txt, 0.5)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-6)
    assert float(v @ txt) > float(img @ txt)
    assert float(v @ img) > float(txt @ img)


def test_thin_wrappers_and_neighbours_still_work(catalogue, db):
    result = search_by_text("pale bag", k=3)
    assert result.mode == "semantic" and len(result.hits) == 3
    product = Product.objects.get(sku="SM-001")
    by_image = similar_products(product, k=5, by="image")
    assert len(by_image) == 5 and product not in [h.product for h in by_image]
    assert len(similar_products(product, k=5, by="text")) == 5


def test_browse_lists_a_category_by_price(catalogue, db):
    result = browse(Filters(category="Bags"), k=4, sort="price_asc")
    assert result.total_candidates == 10 and result.has_next
    prices = [h.product.price for h in result.hits]
    assert prices == sorted(prices)


# --- a rare category under a filtered HNSW scan ---

N_RANDOM, N_RARE, DIM = 3000, 10, 32


def model_of_random_vectors(name: str, count: int, dim: int, seed: int = 42):
    """`count` products with seeded random vectors of `dim` under their own indexed model
    (N_RARE of them 'Rare'), and a query vector."""
    from embeddings.vector_index import create_indexes

    model = EmbeddingModel.objects.create(
        name=name,
        kind="baseline",
        spec={},
        backbone="none",
        text_tower="none",
        image_dim=dim,
        text_dim=dim,
    )
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rare = set(rng.choice(count, N_RARE, replace=False).tolist())
    store_vectors(model, vectors, rare, name)
    create_indexes(model.pk, model.column_dims())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE embeddings_productvector")
    query = rng.normal(size=dim).astype(np.float32)
    return model, query / np.linalg.norm(query)


@pytest.fixture
def random_model(db):
    """3,000 products with seeded random vectors under their own model; 10 are 'Rare'."""
    return model_of_random_vectors("random", N_RANDOM, DIM)


def run_filtered(model, query, iterative: str) -> tuple[list, str]:
    sql, params = vector_search_sql(model, "image_vec", query, 10, filters=Filters(category="Rare"))
    with transaction.atomic(), connection.cursor() as cursor:
        # Force the HNSW path: on 3,000 rows the planner may prefer an exact scan + sort
        # (correct, but not what a big catalogue gets).
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("SET LOCAL hnsw.ef_search = 40")
        cursor.execute(f"SET LOCAL hnsw.iterative_scan = {iterative}")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(sql, params)
        return cursor.fetchall(), plan


def test_a_rare_category_still_fills_a_page(random_model):
    model, query = random_model
    hits = vector_search(model, "image_vec", query, 10, filters=Filters(category="Rare"))
    assert len(hits) == N_RARE
    rows, plan = run_filtered(model, query, "relaxed_order")
    assert f"pv_image_vec_m{model.pk}_hnsw" in plan
    assert len(rows) == N_RARE
    distances = [row[1] for row in rows]
    assert distances == sorted(distances)
    # Without iterative scan the index returns its ef_search nearest rows, and the filter
    # keeps only the few of them that are 'Rare': a short page.
    rows_off, plan_off = run_filtered(model, query, "off")
    assert f"pv_image_vec_m{model.pk}_hnsw" in plan_off
    print(f"filtered HNSW page: {len(rows)} rows with iterative scan, {len(rows_off)} without")
    assert len(rows_off) < N_RARE


def plan_as_searched(model, query, filters: Filters, k: int) -> str:
    """The plan of vector_search's query under the settings vector_search sends with it."""
    sql, params = vector_search_sql(model, "image_vec", query, k, filters=filters)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(vector_search_settings(k, 0, filters))
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_an_unfiltered_search_walks_the_index_at_any_size(db):
    # For 1,000 photo-feature-wide vectors the planner's own choice is a scan of every row
    # and a sort (cheaper by its estimate, 3-4 times slower on the demo's vectors); the
    # search's settings make the HNSW graph its plan. A filtered search keeps the planner's.
    model, query = model_of_random_vectors("wide", 1000, 1280)
    index = f"pv_image_vec_m{model.pk}_hnsw"
    assert index in plan_as_searched(model, query, NO_FILTERS, k=200)  # search() reads 200 deep
    assert "enable_seqscan" not in vector_search_settings(10, 0, Filters(category="Rare"))
    # Inside a transaction the settings end with the query, not at the caller's COMMIT.
    with transaction.atomic(), connection.cursor() as cursor:
        assert len(vector_search(model, "image_vec", query, 10)) == 10
        cursor.execute("SELECT current_setting('enable_seqscan'), current_setting('enable_sort')")
        assert cursor.fetchone() == ("on", "on")
    # A filtered search sets neither, so it leaves a caller's own settings as they are.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        vector_search(model, "image_vec", query, 10, filters=Filters(category="Rare"))
        cursor.execute("SELECT current_setting('enable_seqscan')")
        assert cursor.fetchone() == ("off",)


def test_explanations_add_up_to_the_score(catalogue, db):
    from catalog.search import signal_rankings

    result = search("dark trousers", mode="hybrid", k=10)
    rankings = signal_rankings(result.model, ["text_minilm", "keyword"], 200, q="dark trousers")
    for hit in result.hits:
        assert [c.signal for c in hit.explanation if c.rank] == sorted(
            (c.signal for c in hit.explanation if c.rank),
            key=lambda s: -next(c.share for c in hit.explanation if c.signal == s),
        )
        assert sum(c.share for c in hit.explanation) == pytest.approx(hit.score, abs=1e-9)
        for c in hit.explanation:
            ids = [pid for pid, _ in rankings[c.signal]]
            assert c.rank == (ids.index(hit.product.pk) + 1 if hit.product.pk in ids else None)
            assert c.weight == 1.0  # the baseline model has no fitted weights
            assert c.score == hit.sources.get(c.signal)
    assert {c.label for c in result.hits[0].explanation} == {"Words (MiniLM)", "Keywords"}


def test_one_list_explains_with_its_own_score(catalogue, db):
    result = search("bag", mode="keyword", k=3)
    for rank, hit in enumerate(result.hits, start=1):
        (only,) = hit.explanation
        assert (only.signal, only.rank, only.share, only.weight) == ("keyword", rank, hit.score, 1.0)


def test_a_photo_with_words_explains_the_reranking(catalogue, db):
    result = search("dark", image=product_image("SM-010", catalogue), mode="hybrid", k=5, text_weight=0.5)
    for hit in result.hits:
        signals = {c.signal: c for c in hit.explanation}
        # the photo's list weighs 1 - text_weight, the two word lists text_weight together
        assert signals["image"].rank is not None and signals["image"].weight == 0.5
        assert signals["keyword"].weight == signals["text_minilm"].weight == 0.25
        assert sum(c.share for c in hit.explanation) == pytest.approx(hit.score, abs=1e-9)


def test_a_vector_literal_has_each_value_as_seven_significant_digits() -> None:
    rng = np.random.default_rng(5)
    for dim in (1, 3, 384, 512):
        for _ in range(50):
            with np.errstate(over="ignore"):
                vector = (rng.standard_normal(dim) * 10.0 ** rng.integers(-45, 39, dim)).astype(np.float32)
            assert vector_literal(vector) == "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"
    special = np.array([0.0, -0.0, 1e-45, -3.4028235e38, 1.0, 0.1, 123456789.0, np.inf, -np.inf, np.nan], np.float32)
    assert vector_literal(special) == "[0,-0,1.401298e-45,-3.402823e+38,1,0.1,1.234568e+08,inf,-inf,nan]"


def test_words_encoded_ahead_in_a_batch_serve_the_searches_of_the_block(catalogue, db):
    model = EmbeddingModel.active()
    words = ["red dress", "warm winter coat for walking", "sneakers"]
    one_by_one = {q: text_query_vector(model, q) for q in words}
    outside = [skus(search(q, k=5)) for q in words]
    with pytest.raises(RuntimeError, match="reuse_query_vectors"):
        encode_queries_ahead(model, words)
    with reuse_query_vectors():
        encode_queries_ahead(model, words)
        for q in words:
            column, vector = text_query_vector(model, q)
            assert column == one_by_one[q][0]
            np.testing.assert_allclose(vector, one_by_one[q][1], atol=1e-5)
        assert [skus(search(q, k=5)) for q in words] == outside
