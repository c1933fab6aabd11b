"""Per-model HNSW indexes on ProductVector.

Vectors of every model live in one table with dimensionless vector columns. Each model
gets two partial HNSW indexes (image, text) over a cast to its own dimension; a query
uses exactly the same expression and WHERE clause so the planner picks that index.
pgvector indexes `vector` up to 2,000 dimensions and `halfvec` up to 4,000, so wider
features (ResNet50's 2,048) are indexed as halfvec.
"""
from __future__ import annotations

from django.db import connection

TABLE = "embeddings_productvector"
COLUMNS = ("image_vec", "text_vec", "image_feat", "text_feat")
# A product's further photos (PhotoVector) have the image columns only, indexed the same way.
PHOTO_TABLE = "embeddings_photovector"
PHOTO_COLUMNS = ("image_vec", "image_feat")


def vector_type(dim: int) -> str:
    if dim <= 2000:
        return f"vector({dim})"
    if dim <= 4000:
        return f"halfvec({dim})"
    raise ValueError(f"cannot index {dim}-dimensional vectors (pgvector's HNSW limit is 4,000)")


def indexed_expr(column: str, dim: int) -> str:
    if column not in COLUMNS:
        raise ValueError(column)
    return f"({column}::{vector_type(dim)})"


def query_param(dim: int) -> str:
    return f"%s::{vector_type(dim)}"


def index_name(column: str, model_id: int, table: str = TABLE) -> str:
    return f"{'ph' if table == PHOTO_TABLE else 'pv'}_{column}_m{model_id}_hnsw"


def create_indexes(model_id: int, column_dims: dict[str, int]) -> None:
    """One partial HNSW index per stored column of the model (EmbeddingModel.column_dims()),
    on ProductVector, and on PhotoVector for the image columns."""
    ops = {"vector": "vector_cosine_ops", "halfvec": "halfvec_cosine_ops"}
    with connection.cursor() as cursor:
        # Inside a transaction that already wrote vectors, deferred FK checks must run
        # first: Postgres refuses CREATE INDEX on a table with pending trigger events.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for column, dim in column_dims.items():
            opclass = ops[vector_type(dim).split("(")[0]]
            for table in (TABLE, PHOTO_TABLE) if column in PHOTO_COLUMNS else (TABLE,):
                cursor.execute(
                    f"CREATE INDEX IF NOT EXISTS {index_name(column, model_id, table)} ON {table} "
                    f"USING hnsw ({indexed_expr(column, dim)} {opclass}) "
                    f"WITH (m = 16, ef_construction = 64) WHERE model_id = {int(model_id)}"
                )


def drop_indexes(model_id: int) -> None:
    with connection.cursor() as cursor:
        for column in COLUMNS:
            cursor.execute(f"DROP INDEX IF EXISTS {index_name(column, model_id)}")
        for column in PHOTO_COLUMNS:
            cursor.execute(f"DROP INDEX IF EXISTS {index_name(column, model_id, PHOTO_TABLE)}")
