"""Search: a query (text or photo) -> a vector from the active model -> pgvector -> products.

Every query reads the vectors of exactly one model, the active one; a switch between
models is one transaction elsewhere, so a query never mixes two models' vectors.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from PIL import Image

from catalog.models import Product
from embeddings.models import EmbeddingModel
from embeddings.vector_index import indexed_expr, query_param


class SearchUnavailable(RuntimeError):
    """No model is active yet (nothing has been ingested)."""


@dataclass(frozen=True)
class Filters:
    category: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None

    def sql(self, alias: str) -> tuple[str, list]:
        clauses, params = [], []
        if self.category:
            clauses.append(f"{alias}.category = %s")
            params.append(self.category)
        if self.min_price is not None:
            clauses.append(f"{alias}.price >= %s")
            params.append(self.min_price)
        if self.max_price is not None:
            clauses.append(f"{alias}.price <= %s")
            params.append(self.max_price)
        return "".join(f" AND {c}" for c in clauses), params


NO_FILTERS = Filters()


@dataclass
class Hit:
    product: Product
    score: float  # cosine similarity in [-1, 1] (or a fused score, see catalog/hybrid.py)
    sources: dict[str, float] = field(default_factory=dict)


@dataclass
class SearchResult:
    hits: list[Hit]
    took_ms: float
    model: EmbeddingModel | None


def active_model() -> EmbeddingModel:
    model = EmbeddingModel.active()
    if model is None:
        raise SearchUnavailable("no embedding model is active yet: ingest a catalogue first")
    return model


def vector_search(
    model: EmbeddingModel,
    column: str,
    vector: np.ndarray,
    k: int,
    offset: int = 0,
    filters: Filters = NO_FILTERS,
    exclude_product: int | None = None,
) -> list[tuple[int, float]]:
    """(product_id, cosine similarity) of the nearest vectors of `model`, best first."""
    dim = model.image_dim if column == "image_vec" else model.text_dim
    if vector.shape != (dim,):
        raise ValueError(f"query vector has shape {vector.shape}, model {model.name} expects ({dim},)")
    expr = indexed_expr(column, dim)
    where, params = filters.sql("pv")
    if exclude_product is not None:
        where += " AND pv.product_id <> %s"
        params.append(exclude_product)
    literal = "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"
    # relaxed_order keeps scanning the HNSW graph until enough rows pass the filter;
    # its slightly unordered output is re-sorted by the outer query.
    sql = (
        f"WITH hits AS MATERIALIZED (SELECT pv.product_id, {expr} <=> {query_param(dim)} AS distance "
        f"FROM embeddings_productvector pv WHERE pv.model_id = %s{where} "
        f"ORDER BY distance LIMIT %s) SELECT product_id, distance FROM hits ORDER BY distance OFFSET %s"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        ef = max(settings.HNSW_EF_SEARCH, min(1000, k + offset))
        cursor.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute(sql, [literal, model.pk, *params, k + offset, offset])
        return [(pid, 1.0 - float(distance)) for pid, distance in cursor.fetchall()]


def load_hits(scored: list[tuple[int, float]], sources: str | None = None) -> list[Hit]:
    products = Product.objects.in_bulk([pid for pid, _ in scored])
    return [
        Hit(products[pid], score, {sources: score} if sources else {})
        for pid, score in scored
        if pid in products
    ]


def text_query_vector(model: EmbeddingModel, query: str) -> tuple[str, np.ndarray]:
    """The column a text query searches, and its vector.

    A joint model puts the words in the photos' space (text -> image). The baseline has
    no joint space, so its text query is matched against product texts (MiniLM).
    """
    from embeddings.registry import encoder_for

    vector = encoder_for(model).encode_texts([query])[0]
    return ("image_vec" if model.joint else "text_vec"), vector


def image_query_vector(model: EmbeddingModel, image: Image.Image) -> np.ndarray:
    from embeddings.registry import encoder_for

    return encoder_for(model).encode_images([image])[0]


def search_by_text(query: str, k: int = 24, offset: int = 0, filters: Filters = NO_FILTERS) -> SearchResult:
    started = time.perf_counter()
    model = active_model()
    column, vector = text_query_vector(model, query)
    hits = load_hits(vector_search(model, column, vector, k, offset, filters), "semantic")
    return SearchResult(hits, (time.perf_counter() - started) * 1000, model)


def search_by_image(image: Image.Image, k: int = 24, offset: int = 0, filters: Filters = NO_FILTERS) -> SearchResult:
    started = time.perf_counter()
    model = active_model()
    vector = image_query_vector(model, image)
    hits = load_hits(vector_search(model, "image_vec", vector, k, offset, filters), "image")
    return SearchResult(hits, (time.perf_counter() - started) * 1000, model)


def similar_products(product: Product, k: int = 8, by: str = "image") -> list[Hit]:
    """Neighbours of a product by its stored image or text vector under the active model."""
    model = active_model()
    column = "image_vec" if by == "image" else "text_vec"
    row = product.vectors.filter(model=model).values_list(column, flat=True).first()
    if row is None:
        return []
    return load_hits(vector_search(model, column, np.asarray(row, dtype=np.float32), k, exclude_product=product.pk))
