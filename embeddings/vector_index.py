"""Per-model HNSW indexes on ProductVector.

Vectors of every model live in one table with dimensionless vector columns. Each model
gets two partial HNSW indexes (image, text) over a cast to its own dimension; a query
uses exactly the same expression and WHERE clause so the planner picks that index.

What the index stores is HNSW_STORAGE (docs/scaling.md, "Index choices"):

* ``vector``: 4-byte floats (pgvector indexes `vector` up to 2,000 dimensions, so wider
  features, ResNet50's 2,048, are indexed as halfvec whatever the setting);
* ``halfvec``: 2-byte floats, half the index, the same ranking to ~3 decimal places;
* ``binary``: one bit per dimension (binary_quantize, Hamming distance), 1/32 of the
  vectors' size; the HNSW scan returns HNSW_BINARY_RERANK times the rows asked for and
  those are re-ranked by the exact cosine distance of the stored vectors.

Each storage has its own index name, so a site that changes the setting builds the new
indexes (`manage.py build_vector_indexes`) while the old ones still serve.

When: a model gets no index at registration. A model activated while another serves gets
its indexes in one pass once all its vectors are stored, before the gate searches with it
and before the switch (registry.finish_activation_if_complete): with four graphs filled row
by row during a re-embedding, Postgres spent 10 ms of CPU per product; with them built in one
pass afterwards, 3.9, the build included (docs/benchmarks.md section 11). A model switched
to without that step (the first model of an empty site) gets them in atomic_switch.
`create_indexes` builds only what is absent or INVALID, so each of those calls is cheap when
the indexes are there and repairs a build that died.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.db.backends.utils import CursorWrapper

TABLE = "embeddings_productvector"
COLUMNS = ("image_vec", "text_vec", "image_feat", "text_feat")
# A product's further photos (PhotoVector) have the image columns only, indexed the same way.
PHOTO_TABLE = "embeddings_photovector"
PHOTO_COLUMNS = ("image_vec", "image_feat")
STORAGES = ("vector", "halfvec", "binary")
# Index name suffix per storage ("vector" keeps the name indexes had before the setting).
_SUFFIX = {"vector": "", "halfvec": "_half", "binary": "_bit"}


def index_storage(storage: str | None = None) -> str:
    """`storage`, or the configured HNSW_STORAGE, checked."""
    storage = storage or settings.HNSW_STORAGE
    if storage not in STORAGES:
        raise ValueError(f"HNSW_STORAGE={storage!r}: use one of {', '.join(STORAGES)}")
    return storage


def vector_type(dim: int, storage: str | None = None) -> str:
    """The type the vectors are compared (and, unless binary, indexed) as."""
    if dim > 4000:
        raise ValueError(f"cannot index {dim}-dimensional vectors (pgvector's HNSW limit is 4,000)")
    if dim > 2000 or index_storage(storage) == "halfvec":
        return f"halfvec({dim})"
    return f"vector({dim})"


def indexed_expr(column: str, dim: int, storage: str | None = None) -> str:
    """The stored vector cast to its model's dimension: what the distance is computed on."""
    if column not in COLUMNS:
        raise ValueError(column)
    return f"({column}::{vector_type(dim, storage)})"


def query_param(dim: int) -> str:
    return f"%s::{vector_type(dim)}"


def _binary_expr(column: str, dim: int) -> str:
    return f"(binary_quantize({indexed_expr(column, dim, 'binary')})::bit({dim}))"


def index_expr(column: str, dim: int, storage: str) -> str:
    if storage == "binary":
        return f"{_binary_expr(column, dim)} bit_hamming_ops"
    opclass = "halfvec_cosine_ops" if vector_type(dim, storage).startswith("halfvec") else "vector_cosine_ops"
    return f"{indexed_expr(column, dim, storage)} {opclass}"


def nearest_sql(column: str, dim: int, select: str, table: str, where: str) -> str:
    """Rows of (`select`, distance) of `table` (alias pv), nearest first, through the
    configured index: `where` follows ``pv.model_id = %s``; take its parameters from
    nearest_params."""
    distance = f"{indexed_expr(column, dim)} <=> {query_param(dim)}"
    head = f"SELECT {select}, {distance} AS distance FROM {table} pv WHERE pv.model_id = %s{where}"
    if index_storage() != "binary":
        return f"{head} ORDER BY distance LIMIT %s"
    # The bit index finds candidates by Hamming distance; the stored vectors rank them.
    return (
        f"SELECT * FROM ({head} ORDER BY {_binary_expr(column, dim)} <~> "
        f"binary_quantize({query_param(dim)})::bit({dim}) LIMIT %s) AS candidates ORDER BY distance LIMIT %s"
    )


def nearest_params(vector_literal: object, model_id: int, where_params: list, limit: int) -> list:
    if index_storage() != "binary":
        return [vector_literal, model_id, *where_params, limit]
    return [vector_literal, model_id, *where_params, vector_literal, limit * settings.HNSW_BINARY_RERANK, limit]


def index_name(column: str, model_id: int, table: str = TABLE, storage: str | None = None) -> str:
    suffix = _SUFFIX[index_storage(storage)]
    return f"{'ph' if table == PHOTO_TABLE else 'pv'}_{column}_m{model_id}_hnsw{suffix}"


def _tables(column: str) -> tuple[str, ...]:
    return (TABLE, PHOTO_TABLE) if column in PHOTO_COLUMNS else (TABLE,)


def _index_specs(model_id: int, column_dims: dict[str, int], storage: str) -> list[tuple[str, str]]:
    """(name, CREATE INDEX body) of each of the model's indexes of `storage`."""
    return [
        (
            index_name(column, model_id, table, storage),
            f"ON {table} USING hnsw ({index_expr(column, dim, storage)}) "
            f"WITH (m = 16, ef_construction = 64) WHERE model_id = {int(model_id)}",
        )
        for column, dim in column_dims.items()
        for table in _tables(column)
    ]


def missing_indexes(model_id: int, column_dims: dict[str, int], storage: str | None = None) -> list[str]:
    """The model's indexes of `storage` (default HNSW_STORAGE) that are absent or INVALID: a
    query never uses an INVALID index (what an interrupted CREATE INDEX CONCURRENTLY leaves),
    so search on such a column scans every vector of the model."""
    names = [name for name, _ in _index_specs(model_id, column_dims, index_storage(storage))]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid IN (to_regclass(%s), to_regclass(%s)) AND i.indisvalid AND c.relname = ANY(%s)",
            [TABLE, PHOTO_TABLE, names],
        )
        valid = {row[0] for row in cursor.fetchall()}
    return [name for name in names if name not in valid]


# pg_advisory_lock(BUILD_LOCK, model id): one builder of a model's indexes at a time.
BUILD_LOCK = 0x484E5357  # "HNSW"


def create_indexes(model_id: int, column_dims: dict[str, int], storage: str | None = None) -> list[str]:
    """Build the model's missing or INVALID partial HNSW indexes, one per stored column
    (EmbeddingModel.column_dims()) on ProductVector and, for the image columns, on PhotoVector,
    of `storage` (default HNSW_STORAGE), with HNSW_BUILD_MEMORY and HNSW_BUILD_WORKERS;
    returns the names built. Safe to run again at any point: what is valid is kept.

    Outside a transaction each index is built CONCURRENTLY, so the table's other writers (the
    serving model's ingest) go on meanwhile, and an INVALID index, left by a build that failed
    or was killed, is dropped and built again. Inside one (migrations, a switch inside a
    transaction, tests) it is a plain CREATE INDEX, which blocks writes to the table until the
    transaction ends. Builders of one model take turns (an advisory lock), so an index a
    concurrent builder has not finished yet is never taken for a failed one."""
    storage = index_storage(storage)
    local = connection.in_atomic_block
    with connection.cursor() as cursor:
        if local:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [BUILD_LOCK, model_id])
        else:
            # Polled, not waited for: a session waiting for the lock holds a snapshot, and the
            # holder's CREATE INDEX CONCURRENTLY would wait for that snapshot (a deadlock).
            while not _try_lock(cursor, model_id):
                time.sleep(0.2)
        try:
            todo = set(missing_indexes(model_id, column_dims, storage))
            if not todo:
                return []
            _build(cursor, [(n, body) for n, body in _index_specs(model_id, column_dims, storage) if n in todo], local)
            return sorted(todo)
        finally:
            if not local:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [BUILD_LOCK, model_id])


def _try_lock(cursor: CursorWrapper, model_id: int) -> bool:
    cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [BUILD_LOCK, model_id])
    return bool(cursor.fetchone()[0])


def _build(cursor: CursorWrapper, specs: list[tuple[str, str]], local: bool) -> None:
    if local:
        # After vectors written in the same transaction, deferred FK checks must run first:
        # Postgres refuses CREATE INDEX on a table with pending trigger events.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    # A graph that outgrows maintenance_work_mem is built on disk, several times slower
    # (docs/benchmarks.md section 10). Inside a transaction the settings end with it;
    # otherwise they are reset once the indexes are built.
    cursor.execute(
        "SELECT set_config('maintenance_work_mem', %s, %s), set_config('max_parallel_maintenance_workers', %s, %s)",
        [settings.HNSW_BUILD_MEMORY, local, str(settings.HNSW_BUILD_WORKERS), local],
    )
    concurrently = "" if local else " CONCURRENTLY"
    try:
        for name, body in specs:
            # Absent, or INVALID (a failed build's leftover, which writes still update): start over.
            cursor.execute(f"DROP INDEX{concurrently} IF EXISTS {name}")
            cursor.execute(f"CREATE INDEX{concurrently} {name} {body}")
    finally:
        if not local:
            cursor.execute("RESET maintenance_work_mem")
            cursor.execute("RESET max_parallel_maintenance_workers")


def switch_storage(model_id: int, column_dims: dict[str, int], storage: str | None = None) -> int:
    """Build the model's indexes of `storage` (default HNSW_STORAGE), then drop its indexes
    of the other storages; returns how many it dropped."""
    storage = index_storage(storage)
    create_indexes(model_id, column_dims, storage)
    dropped = 0
    with connection.cursor() as cursor:
        for other in (s for s in STORAGES if s != storage):
            for column in column_dims:
                for table in _tables(column):
                    name = index_name(column, model_id, table, other)
                    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
                    if cursor.fetchone()[0]:
                        cursor.execute(f"DROP INDEX {name}")
                        dropped += 1
    return dropped


def drop_indexes(model_id: int) -> None:
    """Every index of the model, of every storage."""
    with connection.cursor() as cursor:
        for storage in STORAGES:
            for column in COLUMNS:
                cursor.execute(f"DROP INDEX IF EXISTS {index_name(column, model_id, storage=storage)}")
            for column in PHOTO_COLUMNS:
                cursor.execute(f"DROP INDEX IF EXISTS {index_name(column, model_id, PHOTO_TABLE, storage)}")
