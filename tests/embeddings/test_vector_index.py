"""The HNSW index storages (HNSW_STORAGE: vector, halfvec, binary with re-ranking) and their build
settings, on real Postgres + pgvector: each is the index the site's query uses, and answers like
exact search."""

from __future__ import annotations


import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings

from catalog.filters import Filters
from catalog.search import vector_search, vector_search_sql
from embeddings.models import EmbeddingModel, ProductVector
from embeddings.vector_index import create_indexes, index_name, missing_indexes
from tests.catalog.test_search import store_vectors

N, N_RARE, DIM = 2000, 8, 32


@pytest.fixture
def clustered(db):
    """2,000 products around 20 seeded centres under their own model; 8 are 'Rare'."""
    model = EmbeddingModel.objects.create(
        name="clustered-32",
        kind="baseline",
        spec={},
        backbone="none",
        text_tower="none",
        image_dim=DIM,
        text_dim=DIM,
        status=EmbeddingModel.Status.ACTIVE,
    )
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(20, DIM))
    vectors = (centres[rng.integers(0, 20, N)] + 0.5 * rng.normal(size=(N, DIM))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rare = set(rng.choice(N, N_RARE, replace=False).tolist())
    products = store_vectors(model, vectors, rare, "clustered")
    query = centres[3].astype(np.float32) + 0.3 * rng.normal(size=DIM).astype(np.float32)
    ids = np.array([p.pk for p in products])
    return model, vectors, ids, query / np.linalg.norm(query)


def plan_and_rows(model, query, k: int, filters: Filters = Filters()) -> tuple[str, list]:
    sql, params = vector_search_sql(model, "text_vec", query, k, filters=filters)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # 2,000 rows: force the plan a big catalogue gets
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(sql, params)
        return plan, cursor.fetchall()


@pytest.mark.parametrize("storage", ["vector", "halfvec", "binary"])
def test_each_storage_serves_the_query_and_ranks_like_exact_search(clustered, storage):
    model, vectors, ids, query = clustered
    with override_settings(HNSW_STORAGE=storage, HNSW_BINARY_RERANK=10):
        create_indexes(model.pk, model.column_dims())
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE embeddings_productvector")
        hits = vector_search(model, "text_vec", query, 10)
        # (plan_and_rows' SET LOCALs last until the test's transaction ends: after the search)
        plan, rows = plan_and_rows(model, query, 10)
        assert index_name("text_vec", model.pk) in plan
        assert (
            index_name("text_vec", model.pk)
            == f"pv_text_vec_m{model.pk}_hnsw" + {"vector": "", "halfvec": "_half", "binary": "_bit"}[storage]
        )
    exact = ids[np.argsort(-(vectors @ query))[:10]]
    got = [pid for pid, _ in hits]
    assert len(set(got) & set(exact.tolist())) >= 9
    # The scores are the stored vectors' cosine (binary re-ranks by them), best first.
    by_id = dict(zip(ids.tolist(), vectors @ query))
    tolerance = 2e-3 if storage == "halfvec" else 1e-5
    for pid, score in hits:
        assert score == pytest.approx(float(by_id[pid]), abs=tolerance)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


@pytest.mark.parametrize("storage", ["halfvec", "binary"])
def test_a_rare_filter_fills_the_page_under_each_storage(clustered, storage):
    model, _, _, query = clustered
    with override_settings(HNSW_STORAGE=storage):
        create_indexes(model.pk, model.column_dims())
        hits = vector_search(model, "text_vec", query, 10, filters=Filters(category="Rare"))
        plan, rows = plan_and_rows(model, query, 10, Filters(category="Rare"))
        assert index_name("text_vec", model.pk) in plan
    assert len(rows) == len(hits) == N_RARE


def test_an_unknown_storage_is_a_clear_error(clustered):
    model, _, _, query = clustered
    with override_settings(HNSW_STORAGE="pq"), pytest.raises(ValueError, match="HNSW_STORAGE='pq'"):
        vector_search(model, "text_vec", query, 10)


@pytest.mark.django_db(transaction=True)
def test_build_settings_hold_only_while_building():
    model = EmbeddingModel.objects.create(
        name="empty-8", kind="baseline", spec={}, backbone="none", text_tower="none", image_dim=8, text_dim=8
    )
    with connection.cursor() as cursor:
        cursor.execute("SHOW maintenance_work_mem")
        before = cursor.fetchone()[0]
    assert before != "300MB"
    with override_settings(HNSW_BUILD_MEMORY="300MB", HNSW_BUILD_WORKERS=0):
        with transaction.atomic(), connection.cursor() as cursor:
            create_indexes(model.pk, model.column_dims())  # in a transaction: SET LOCAL
            cursor.execute("SHOW maintenance_work_mem")
            assert cursor.fetchone()[0] == "300MB"
        with connection.cursor() as cursor:
            cursor.execute("SHOW maintenance_work_mem")
            assert cursor.fetchone()[0] == before
        create_indexes(model.pk, {"image_vec": 8})  # autocommit: set, then reset
        with connection.cursor() as cursor:
            cursor.execute("SHOW maintenance_work_mem")
            assert cursor.fetchone()[0] == before


def test_build_vector_indexes_switches_a_live_model_to_the_configured_storage(clustered, capsys):
    model = clustered[0]
    create_indexes(model.pk, model.column_dims(), "vector")
    with override_settings(HNSW_STORAGE="halfvec"):
        call_command("build_vector_indexes", drop_others=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings_productvector'")
        names = {row[0] for row in cursor.fetchall()}
    assert {f"pv_image_vec_m{model.pk}_hnsw_half", f"pv_text_vec_m{model.pk}_hnsw_half"} <= names
    assert f"pv_text_vec_m{model.pk}_hnsw" not in names
    assert "halfvec indexes present for 2 model columns, 3 other indexes dropped" in capsys.readouterr().out


def index_validity(names: list[str]) -> dict[str, bool]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = ANY(%s)",
            [names],
        )
        return dict(cursor.fetchall())


def break_index(name: str) -> None:
    """What a CREATE INDEX CONCURRENTLY killed mid-way leaves: the index, marked INVALID."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", [name])


@pytest.mark.django_db(transaction=True)
def test_an_invalid_leftover_index_is_found_and_built_again():
    model = EmbeddingModel.objects.create(
        name="leftover-32", kind="baseline", spec={}, backbone="none", text_tower="none", image_dim=DIM, text_dim=DIM
    )
    store_vectors(model, np.random.default_rng(3).normal(size=(50, DIM)).astype(np.float32), set(), "leftover")
    dims = model.column_dims()
    every = missing_indexes(model.pk, dims)
    assert sorted(create_indexes(model.pk, dims)) == sorted(every)  # autocommit: CONCURRENTLY
    assert missing_indexes(model.pk, dims) == [] and create_indexes(model.pk, dims) == []  # idempotent
    text = index_name("text_vec", model.pk)
    break_index(text)
    assert missing_indexes(model.pk, dims) == [text]
    assert create_indexes(model.pk, dims) == [text]
    assert index_validity(every) == dict.fromkeys(every, True)
    # The same inside a transaction (plain CREATE INDEX).
    break_index(text)
    with transaction.atomic():
        assert create_indexes(model.pk, dims) == [text]
    assert index_validity(every) == dict.fromkeys(every, True)


def test_a_small_category_is_ranked_exactly_through_its_btree_and_a_large_one_by_hnsw(clustered):
    model, vectors, ids, query = clustered
    create_indexes(model.pk, model.column_dims())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE embeddings_productvector")

    def plan_and_rows(category: str) -> tuple[str, list]:
        sql, params = vector_search_sql(model, "text_vec", query, 10, filters=Filters(category=category))
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # 2,000 rows: the plans a big catalogue gets
            cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            cursor.execute(sql, params)
            return plan, cursor.fetchall()

    plan, rows = plan_and_rows("Rare")
    assert "pv_model_category" in plan and index_name("text_vec", model.pk) not in plan
    rare_ids = set(ProductVector.objects.filter(model=model, category="Rare").values_list("product_id", flat=True))
    rare = [i for i, pid in enumerate(ids) if pid in rare_ids]
    exact = ids[rare][np.argsort(-(vectors[rare] @ query))]
    assert [row[0] for row in rows] == exact.tolist() and len(rows) == N_RARE  # all of them, exactly ranked
    plan, rows = plan_and_rows("Common")
    assert index_name("text_vec", model.pk) in plan and len(rows) == 10
