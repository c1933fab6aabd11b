"""Search: words and/or a photo -> ranked lists (pgvector, Postgres full text) -> products.

Every query reads the vectors of exactly one model, the active one; a switch between
models is one transaction elsewhere, so a query never mixes two models' vectors.
``search()`` is the one entry point (page, API and evaluation); docs/search.md says
what each mode does.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

import numpy as np
from django.conf import settings
from django.db.models import Count, prefetch_related_objects
from PIL import Image

from catalog import search_cache
from catalog.examples import NO_EXAMPLES, Examples, ExamplesRefused, QueryVectors, has_exclusions, split_negations
from catalog.filters import NO_FILTERS, Filters
from catalog.hybrid import rrf_scored
from catalog.keyword import keyword_search
from catalog.models import FURTHER_PHOTOS, Photo, Product, products_with_photos
from catalog.popularity import product_popularity
from catalog.suggest import Correction, correct_query
from embeddings.models import EmbeddingModel
from embeddings.registry import encoder_for, query_encoder_for
from embeddings.vector_index import PHOTO_COLUMNS, PHOTO_TABLE, TABLE, nearest_params, nearest_sql
from searchsite.db_router import search_connection


class SearchUnavailable(RuntimeError):
    """No model is active yet (nothing has been ingested)."""


# What each ranked list is, in words (the page's "why here" shows these).
SIGNAL_LABELS = {
    "keyword": "Keywords",
    "text_minilm": "Words (MiniLM)",
    "text_photo": "Words → photos",
    "text_joint": "Words → descriptions",
    "photo_pretrained": "Photo",
    "photo_joint": "Photo (joint)",
    "image": "Photo",
    "composed": "Photo + words",
    "popularity": "Popularity (clicks)",
}
# Lists made from a query's examples (see example_rankings): "<prefix>:<signal>".
EXAMPLE_LABELS = {"like": "More like the examples", "unlike": "Less like the examples", "avoid": "Words to avoid"}


def signal_label(name: str) -> str:
    prefix, _, signal = name.partition(":")
    if signal and prefix in EXAMPLE_LABELS:
        return f"{EXAMPLE_LABELS[prefix]} ({SIGNAL_LABELS.get(signal, signal)})"
    return SIGNAL_LABELS.get(name, name)


@dataclass(frozen=True)
class Contribution:
    """What one ranked list did for one hit."""

    signal: str  # the list: a signal name, or "image"/"composed" for photo + words
    rank: int | None  # the hit's place in that list (1 = first); None: not in the list
    score: float | None  # the list's own score for it (cosine, keyword score)
    weight: float  # the list's fusion weight (negative: a list of what to avoid)
    share: float  # what the list added to the hit's score (or took away): the shares sum to the score

    @property
    def label(self) -> str:
        return signal_label(self.signal)

    @property
    def signed_share(self) -> str:
        return f"{self.share:+.3f}".replace("-", "\u2212")


@dataclass
class Hit:
    product: Product
    score: float  # cosine similarity in [-1, 1] (or a fused score, see catalog/hybrid.py)
    sources: dict[str, float] = field(default_factory=dict)
    # Which lists placed it and with what weight (search() fills it; best share first).
    explanation: list[Contribution] = field(default_factory=list)
    # The photo that placed it, from the photo list that did most for it (search() fills
    # it); None when no photo list did (words against descriptions, keywords).
    photo: Photo | None = None


@dataclass
class SearchResult:
    hits: list[Hit]
    took_ms: float
    model: EmbeddingModel | None
    mode: str = ""
    sort: str = "relevance"
    offset: int = 0
    k: int = 0
    total_candidates: int = 0  # ranked candidates after min_score (capped, see search())
    has_next: bool = False
    # The words searched (after correction) and the correction made, if any (correct=True).
    query: str | None = None
    correction: Correction | None = None
    # Every ranked candidate's product id, best first (the pool facets count), and how deep
    # each list was read for it.
    candidates: list[int] = field(default_factory=list, repr=False)
    depth: int = 0
    # The examples searched with (products, photos, words to avoid, those in `q` included).
    examples: Examples = NO_EXAMPLES
    # Photo + words: how much the words weighed (None: no photo with words).
    text_weight: float | None = None
    # The hits as the API's JSON (bytes) for one site address (catalog/api.py). A page in the
    # result cache (catalog/search_cache.py) keeps only these: its `hits` are empty, so a
    # page served from memory or Redis is neither rendered again nor unpickled product by product.
    rendered: bytes | None = field(default=None, repr=False, compare=False)


def active_model() -> EmbeddingModel:
    model = EmbeddingModel.active()
    if model is None:
        raise SearchUnavailable("no embedding model is active yet: ingest a catalogue first")
    return model


_LITERAL_FORMATS: dict[int, str] = {}


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form of a query vector, each value with 7 significant digits: one
    %-format of the whole vector (what f"{x:.7g}" gives each value, in a third less CPU)."""
    values = vector.tolist()
    form = _LITERAL_FORMATS.get(len(values))
    if form is None:
        form = _LITERAL_FORMATS[len(values)] = "[" + ",".join(["%.7g"] * len(values)) + "]"
    return form % tuple(values)


def vector_search_sql(
    model: EmbeddingModel,
    column: str,
    vector: np.ndarray,
    k: int,
    offset: int = 0,
    filters: Filters = NO_FILTERS,
    exclude_product: int | None = None,
) -> tuple[str, list]:
    """The SQL and parameters of vector_search (tests EXPLAIN it): rows of (product_id,
    distance), or for an image column (product_id, distance, photo_id) at each product's
    best photo (photo_id NULL: its main photo, else the ProductPhoto)."""
    dim = model.column_dims()[column]
    if vector.shape != (dim,):
        raise ValueError(f"query vector has shape {vector.shape}, model {model.name} expects ({dim},)")
    where, params = filters.sql("pv")
    if exclude_product is not None:
        where += " AND pv.product_id <> %s"
        params.append(exclude_product)
    literal = vector_literal(vector)

    def nearest(photo: str, table: str) -> str:
        return nearest_sql(column, dim, f"pv.product_id, {photo} AS photo_id", table, where)

    if column not in PHOTO_COLUMNS or settings.PRODUCT_MAX_PHOTOS < 2:
        sql = (
            f"WITH hits AS MATERIALIZED ({nearest('NULL', TABLE)}) "
            # "+ 0": Postgres 17+ trusts the CTE's ORDER BY and would skip this sort, but
            # relaxed_order hands rows back slightly out of order (pgvector's README does the same).
            f"SELECT product_id, distance FROM hits ORDER BY distance + 0 OFFSET %s"
        )
        return sql, [*nearest_params(literal, model.pk, params, k + offset), offset]
    # A product scores by its best photo: the main photos' k + offset nearest, and the
    # further photos' nearest, grouped by product. Reading the further photos
    # (k + offset) * (PRODUCT_MAX_PHOTOS - 1) deep is exact: a photo ranked above one of
    # the top k + offset products' best photo belongs to one of the fewer products above it,
    # each with at most PRODUCT_MAX_PHOTOS - 1 further photos.
    sql = (
        f"WITH main AS MATERIALIZED ({nearest('NULL::bigint', TABLE)}), "
        f"further AS MATERIALIZED ({nearest('pv.photo_id', PHOTO_TABLE)}), "
        f"best AS (SELECT DISTINCT ON (product_id) product_id, distance, photo_id "
        f"FROM (SELECT * FROM main UNION ALL SELECT * FROM further) AS every_photo "
        f"ORDER BY product_id, distance, photo_id NULLS FIRST) "
        f"SELECT product_id, distance, photo_id FROM best ORDER BY distance LIMIT %s OFFSET %s"
    )
    depth = k + offset
    further = depth * (settings.PRODUCT_MAX_PHOTOS - 1)
    return sql, [
        *nearest_params(literal, model.pk, params, depth),
        *nearest_params(literal, model.pk, params, further),
        k,
        offset,
    ]


class PhotoRanking(list):
    """A Ranking over products' photos: (product_id, score) at each product's best photo,
    best first, like any Ranking; `photos` says which photo placed a product
    (product_id -> ProductPhoto id; a product not in it matched its main photo)."""

    def __init__(self, items: Iterable[tuple[int, float]] = (), photos: dict[int, int] | None = None) -> None:
        super().__init__(items)
        self.photos: dict[int, int] = dict(photos or {})


# An unfiltered nearest-neighbour query goes through the model's HNSW index at any size.
# Below about 10,000 products Postgres prices a scan of every row (the cast and distance
# of each, TOAST reads for wide vectors) below the graph walk at ef_search 200, and picks
# it, though it is 3-4 times slower: on the demo's 2,500 products 2.9 against 1.1 ms for
# words, 13.9 against 3.6 ms for photos, with the same first 24 (docs/benchmarks.md
# section 1). A filtered query keeps the planner's choice: a rare category is cheaper
# through its btree.
INDEX_ONLY = "SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off; "
INDEX_ONLY_UNDONE = "SET LOCAL enable_seqscan TO DEFAULT; SET LOCAL enable_sort TO DEFAULT"


def walks_index_only(filters: Filters) -> bool:
    """Whether vector_search turns the scan and sort off for a query with these filters."""
    return filters == NO_FILTERS


def vector_search_settings(k: int, offset: int, filters: Filters) -> str:
    """The SET LOCALs vector_search sends in the same message as its query."""
    ef = max(settings.HNSW_EF_SEARCH, min(1000, k + offset))
    # relaxed_order keeps scanning the HNSW graph until enough rows pass the filter (a rare
    # category still fills a page); its slightly unordered output is re-sorted by the outer
    # query. tests/catalog/test_search.py proves both.
    forced = INDEX_ONLY if walks_index_only(filters) else ""
    return f"{forced}SET LOCAL hnsw.ef_search = {int(ef)}; SET LOCAL hnsw.iterative_scan = relaxed_order;"


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
    sql, params = vector_search_sql(model, column, vector, k, offset, filters, exclude_product)
    # The SET LOCALs and the query go in one message, one round trip: Postgres runs a
    # message of several statements as one transaction (an implicit one outside a
    # transaction block), so the settings end with it, as they did with BEGIN ... COMMIT
    # around them, which cost four round trips more.
    statements = f"{vector_search_settings(k, offset, filters)} {sql}"
    connection = search_connection()  # the replica inside a search request (db_router.py)
    if connection.in_atomic_block and walks_index_only(filters):  # they would last until the caller's COMMIT
        statements += f"; {INDEX_ONLY_UNDONE}"
    with connection.cursor() as cursor:
        cursor.execute(statements, params)
        while cursor.description is None and cursor.nextset():  # past the SETs' results
            pass
        rows = cursor.fetchall()
    ranking = [(row[0], 1.0 - float(row[1])) for row in rows]
    if column not in PHOTO_COLUMNS:
        return ranking
    return PhotoRanking(ranking, {row[0]: row[2] for row in rows if len(row) > 2 and row[2] is not None})


def load_hits(scored: list[tuple[int, float]], sources: str | None = None) -> list[Hit]:
    products = products_with_photos([pid for pid, _ in scored])
    return [Hit(products[pid], score, {sources: score} if sources else {}) for pid, score in scored if pid in products]


@dataclass(frozen=True)
class Signal:
    """One ranked list a search can fuse: a query vector compared with one stored column."""

    name: str
    modality: str  # "text" or "photo": what the query is
    query: str  # the encoder output the query vector comes from ("" for keyword)
    column: str  # the stored ProductVector column it is compared with ("" for keyword)


KEYWORD = Signal("keyword", "text", "", "")


def model_signals(model: EmbeddingModel) -> dict[str, Signal]:
    """Every signal `model` can serve, by name.

    A joint model has its joint space (words -> photos, words -> product texts, photo ->
    photos) and keeps the pretrained signals it was built on (MiniLM words -> texts,
    backbone photo -> photos); the baseline has only the pretrained ones. Keyword search
    over Postgres full text is always there.
    """
    dims = model.column_dims()
    signals: list[Signal] = []
    if model.joint:
        signals += [
            Signal("text_photo", "text", "text_vec", "image_vec"),
            Signal("text_joint", "text", "text_vec", "text_vec"),
        ]
        if "text_feat" in dims:
            signals.append(Signal("text_minilm", "text", "text_feat", "text_feat"))
        signals.append(Signal("photo_joint", "photo", "image_vec", "image_vec"))
        if "image_feat" in dims:
            signals.append(Signal("photo_pretrained", "photo", "image_feat", "image_feat"))
    else:
        signals += [
            Signal("text_minilm", "text", "text_vec", "text_vec"),
            Signal("photo_pretrained", "photo", "image_vec", "image_vec"),
        ]
    signals.append(KEYWORD)
    return {s.name: s for s in signals}


# Which signals each kind of search may fuse. "hybrid" and "semantic" are text searches
# (semantic leaves keyword out); "photo" is a photo alone.
FUSION_KINDS = ("hybrid", "semantic", "photo")


def kind_signals(model: EmbeddingModel, kind: str) -> list[str]:
    signals = model_signals(model).values()
    if kind == "photo":
        return [s.name for s in signals if s.modality == "photo"]
    if kind == "semantic":
        return [s.name for s in signals if s.modality == "text" and s is not KEYWORD]
    if kind == "hybrid":
        return [s.name for s in signals if s.modality == "text"]
    if kind == "keyword":
        return [KEYWORD.name]
    raise ValueError(f"unknown fusion kind {kind!r}")


def fusion_weights(model: EmbeddingModel, kind: str) -> dict[str, float]:
    """The weights a `kind` search fuses its signals with: fitted ones stored on the model
    (catalog/gate.py fits them on held-out queries), else equal weights. Zero weights are
    left out, so an unused signal costs no query."""
    allowed = kind_signals(model, kind)
    fitted = (model.fusion or {}).get(kind) or {}
    weights = {name: float(fitted.get(name, 0.0)) for name in allowed} if fitted else dict.fromkeys(allowed, 1.0)
    weights = {name: w for name, w in weights.items() if w > 0}
    return weights or dict.fromkeys(allowed, 1.0)


_reused_vectors: ContextVar[dict[tuple, QueryVectors] | None] = ContextVar("reused_vectors", default=None)


@contextmanager
def reuse_query_vectors() -> Iterator[None]:
    """Inside this block each (model, words, columns) is encoded once: a page that runs one
    query twice (its results, then the unfiltered pool its facets count) pays for one."""
    token = _reused_vectors.set({})
    try:
        yield
    finally:
        _reused_vectors.reset(token)


def encode_queries_ahead(model: EmbeddingModel, queries: Iterable[str]) -> None:
    """Inside reuse_query_vectors(): encode `queries` under `model` now, in batches, so each
    search of them in the block finds its vectors (every text column, alone or together). The
    activation gate runs hundreds of known wordings: one at a time, the text towers spent a
    fifth of its time on them."""
    reused = _reused_vectors.get()
    if reused is None:
        raise RuntimeError("encode_queries_ahead() fills reuse_query_vectors(); call it inside that block")
    columns = sorted({s.query for s in model_signals(model).values() if s.modality == "text"} - {""})
    todo = [q for q in dict.fromkeys(queries) if q]
    if not columns or not todo:
        return
    encoded = query_encoder_for(model).encode_text_signals(todo, columns)
    subsets = [c for n in range(1, len(columns) + 1) for c in itertools.combinations(columns, n)]
    for i, query in enumerate(todo):
        for subset in subsets:
            reused[(model.pk, query, subset)] = search_cache.frozen({c: encoded[c][i] for c in subset})


def text_query_vectors(model: EmbeddingModel, query: str, columns: Iterable[str]) -> QueryVectors:
    columns = sorted(set(columns) - {""})
    if not columns:
        return {}
    reused = _reused_vectors.get()
    key = (model.pk, query, tuple(columns))
    if reused is not None and key in reused:
        return reused[key]
    # The worker's LRU of query vectors: popular wordings skip the text tower. The int8 query
    # encoder's vectors are not the fp32 tower's: another entry.
    lru_key = (search_cache.model_key(model), query, tuple(columns), settings.QUERY_ENCODER_INT8)
    vectors = search_cache.text_vectors.get(lru_key)
    if vectors is None:
        vectors = {c: v[0] for c, v in query_encoder_for(model).encode_text_signals([query], columns).items()}
        search_cache.text_vectors.put(lru_key, search_cache.frozen(vectors))
    if reused is not None:
        reused[key] = vectors
    return vectors


def image_query_vectors(model: EmbeddingModel, image: Image.Image) -> QueryVectors:
    """Every photo signal's query vector for `image` (one backbone pass; none for pixels the
    worker encoded before under this model)."""
    key = (search_cache.model_key(model), search_cache.image_digest(image))
    vectors = search_cache.photo_vectors.get(key)
    if vectors is None:
        vectors = {c: v[0] for c, v in encoder_for(model).encode_image_signals([image]).items()}
        search_cache.photo_vectors.put(key, search_cache.frozen(vectors))
    return vectors


def text_query_vector(model: EmbeddingModel, query: str) -> tuple[str, np.ndarray]:
    """The column a plain text query searches first, and its vector (benchmarks use this)."""
    signal = model_signals(model)["text_photo" if model.joint else "text_minilm"]
    return signal.column, text_query_vectors(model, query, [signal.query])[signal.query]


def composed_vector(image_vec: np.ndarray, text_vec: np.ndarray, text_weight: float) -> np.ndarray:
    """normalise((1 - t) * image + t * text), t = text_weight in [0, 1]: "like this photo, but
    <words>" in a joint space; 0 is the photo alone, 1 the words alone."""
    t = float(text_weight)
    v = (1.0 - t) * image_vec.astype(np.float32) + t * text_vec.astype(np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-12 else image_vec


def check_text_weight(text_weight: float | None) -> float:
    """The photo + words balance to use: `text_weight`, or SEARCH_TEXT_WEIGHT when None."""
    t = settings.SEARCH_TEXT_WEIGHT if text_weight is None else text_weight
    if not isinstance(t, (int, float)) or not 0.0 <= float(t) <= 1.0:  # NaN fails too
        raise ValueError(f"text_weight must be from 0 to 1, got {t!r}")
    return float(t)


MODES = ("hybrid", "semantic", "keyword")
SORTS = ("relevance", "price_asc", "price_desc")
MAX_DEPTH = 1000  # the deepest any ranked list is read (HNSW ef_search tops out here)

Ranking = list[tuple[int, float]]


def signal_rankings(
    model: EmbeddingModel | None,
    names: Iterable[str],
    depth: int,
    filters: Filters = NO_FILTERS,
    *,
    q: str | None = None,
    photo: QueryVectors | None = None,
) -> dict[str, Ranking]:
    """The ranked list of each named signal for words `q` and/or a photo's query vectors."""
    names = list(names)
    rankings: dict[str, Ranking] = {}
    if KEYWORD.name in names and q:
        rankings[KEYWORD.name] = keyword_search(q, depth, filters)
    vector_names = [n for n in names if n != KEYWORD.name]
    if not vector_names:
        return rankings
    if model is None:
        raise SearchUnavailable("no embedding model is active yet: ingest a catalogue first")
    signals = model_signals(model)
    unknown = [n for n in vector_names if n not in signals]
    if unknown:
        raise ValueError(f"model {model.name} has no signal {', '.join(unknown)}")
    wanted = [signals[n] for n in vector_names]
    vectors: QueryVectors = dict(photo or {})
    if q:
        vectors.update(text_query_vectors(model, q, [s.query for s in wanted if s.modality == "text"]))
    for signal in wanted:
        # Text queries yield text_* vectors, photos image_* ones: the names never overlap.
        vector = vectors.get(signal.query)
        if vector is not None:
            rankings[signal.name] = vector_search(model, signal.column, vector, depth, filters=filters)
    return rankings


def fuse(rankings: dict[str, Ranking], weights: dict[str, float] | None = None) -> list[tuple[int, float, dict]]:
    """(product_id, score, {signal: its own score}) best first; one list keeps its own scores."""
    if len(rankings) == 1:
        name, ranking = next(iter(rankings.items()))
        return [(pid, score, {name: score}) for pid, score in ranking]
    return rrf_scored(rankings, settings.SEARCH_RRF_K, weights)


def _text_rankings(
    model: EmbeddingModel | None, q: str, mode: str, depth: int, filters: Filters, only: Sequence[str] | None = None
) -> tuple[dict[str, Ranking], dict[str, float]]:
    if mode == "keyword":
        weights = {KEYWORD.name: 1.0}
    elif model is None:
        raise SearchUnavailable("no embedding model is active yet: ingest a catalogue first")
    else:
        weights = fusion_weights(model, mode)
    if only is not None:
        weights = {n: weights.get(n, 1.0) for n in only}
    return signal_rankings(model, weights, depth, filters, q=q), weights


PHOTO_WORDS_METHODS = ("rerank", "composed")


def photo_words_method(model: EmbeddingModel) -> str:
    """How a photo + words search combines the two under `model`:

    - "rerank": the photo's neighbours (its fused photo lists) re-ranked by RRF with the
      words' own fused lists (semantic or hybrid). Works in any model; the baseline's way.
    - "composed": one query in a joint model's space, normalise((1 - t)·photo + t·words),
      plus the words' keyword list in hybrid mode.

    The gate fits the choice per joint model on held-out photo + words probes
    (catalog/gate.fit_photo_words) and stores it as ``fusion["photo_words"]``; a model
    without that fit re-ranks, as the untrained baseline does."""
    fitted = (model.fusion or {}).get("photo_words") or {}
    return "composed" if model.joint and fitted.get("composed", 0.0) > 0 else "rerank"


def _photo_rankings(
    model: EmbeddingModel,
    photo: QueryVectors,
    q: str | None,
    mode: str,
    depth: int,
    filters: Filters,
    text_weight: float,
) -> tuple[dict[str, Ranking], dict[str, float] | None, list[int] | None]:
    """Rankings for a photo, alone or with words; their weights; the items fusion may return.
    With words, `text_weight` t in [0, 1] is how much they weigh against the photo: in the
    joint space's composed vector, or t : 1 - t between the words' lists and the photo's
    (photo_words_method)."""
    photo_weights = fusion_weights(model, "photo")
    photo_lists = signal_rankings(model, photo_weights, depth, filters, photo=photo)
    if not q:
        return photo_lists, photo_weights, None
    image_ranking = PhotoRanking(
        [(pid, score) for pid, score, _ in fuse(photo_lists, photo_weights)], best_photos(photo_lists, photo_weights)
    )
    if photo_words_method(model) == "composed" and "image_vec" in photo:
        # One query in the joint space; keyword matches of the words join in by RRF.
        text_vec = text_query_vectors(model, q, ["text_vec"])["text_vec"]
        rankings: dict[str, Ranking] = {}
        weights: dict[str, float] = {}
        if mode in ("hybrid", "semantic"):
            vec = composed_vector(photo["image_vec"], text_vec, text_weight)
            rankings["composed"] = vector_search(model, "image_vec", vec, depth, filters=filters)
            weights["composed"] = 1.0
        if mode == "keyword":
            rankings["image"] = image_ranking
            weights["image"] = 1.0 - text_weight
        if mode in ("hybrid", "keyword"):
            # The composed list already holds the words at t; their keyword list joins at t.
            rankings.update(signal_rankings(model, [KEYWORD.name], depth, filters, q=q))
            weights[KEYWORD.name] = text_weight
        return rankings, weights, None
    # Re-rank: keep the photo's neighbours and re-rank them by RRF with the words' own
    # (semantic/keyword) rankings: the photo's list weighs 1 - t, the words' lists t together,
    # shared among them as their own fused weights share.
    text_lists, text_weights = _text_rankings(model, q, mode, MAX_DEPTH, filters)
    total = sum(text_weights.get(name, 1.0) for name in text_lists) or 1.0
    weights = {
        "image": 1.0 - text_weight,
        **{name: text_weight * text_weights.get(name, 1.0) / total for name in text_lists},
    }
    return {"image": image_ranking, **text_lists}, weights, [pid for pid, _ in image_ranking]


def example_signals(model: EmbeddingModel) -> dict[str, Signal]:
    """Stored column -> the signal that compares a vector of that column with the same column:
    the spaces an example product's own vectors can be searched in."""
    return {s.column: s for s in model_signals(model).values() if s is not KEYWORD and s.query == s.column}


def _best_of(rankings: list[Ranking], depth: int) -> Ranking:
    """One list from several: each item by its best score in any (near any of the examples)."""
    best: dict[int, float] = {}
    for ranking in rankings:
        for pid, score in ranking:
            if score > best.get(pid, float("-inf")):
                best[pid] = score
    return sorted(best.items(), key=lambda item: -item[1])[:depth]


def _product_example_vectors(model: EmbeddingModel, ids: Sequence[int], columns: Iterable[str]) -> list[QueryVectors]:
    columns = list(columns)
    rows = {pid: row for pid, *row in model.vectors.filter(product_id__in=ids).values_list("product_id", *columns)}
    missing = [pid for pid in ids if pid not in rows]
    if missing:
        names = Product.objects.filter(pk__in=missing).values_list("sku", flat=True)
        raise ValueError(f"product {', '.join(names) or missing} is not searchable yet under model {model.name}")
    return [{c: np.asarray(v, dtype=np.float32) for c, v in zip(columns, rows[pid]) if v is not None} for pid in ids]


def example_rankings(
    model: EmbeddingModel | None,
    examples: Examples,
    base_weights: dict[str, float],
    mode: str,
    depth: int,
    filters: Filters,
) -> tuple[dict[str, Ranking], dict[str, float]]:
    """The ranked lists of a query's examples and their weights (negative: to avoid).

    An example product is searched by its own stored vectors in every space the model
    has (photo and description: example_signals), an example photo by its photo vectors;
    the lists of one sign are merged per space by each product's best similarity to any
    of the examples (as Qdrant's best-score strategy). The positive examples together
    weigh as much as the query's own lists, split evenly over the spaces, the negative
    ones SEARCH_NEGATIVE_WEIGHT times that; rrf() subtracts the negative lists, so what
    is nearest an avoided example (its SEARCH_UNLIKE_DEPTH nearest) drops (Marqo's negative
    weights, in rank fusion). Words to avoid are searched like words (the text signals of
    `mode`, keyword included in keyword and hybrid mode) as deep as the query, with the same
    total weight, negated.
    """
    rankings: dict[str, Ranking] = {}
    weights: dict[str, float] = {}
    total = sum(w for n, w in base_weights.items() if w > 0) or 1.0
    negative = float(settings.SEARCH_NEGATIVE_WEIGHT)
    vectors_needed = examples.like or examples.unlike or examples.like_photos or examples.unlike_photos
    if vectors_needed or (examples.avoid and mode != "keyword"):
        if model is None:
            raise SearchUnavailable("no embedding model is active yet: ingest a catalogue first")
    if vectors_needed:
        assert model is not None
        by_column = example_signals(model)
        weight = total / len(by_column)
        like = _product_example_vectors(model, examples.like, by_column) + list(examples.like_photos)
        unlike = _product_example_vectors(model, examples.unlike, by_column) + list(examples.unlike_photos)
        # An avoided example demotes its nearest SEARCH_UNLIKE_DEPTH only: its near-duplicates,
        # not everything of its kind (rank fusion would push its whole category down).
        unlike_depth = min(depth, settings.SEARCH_UNLIKE_DEPTH)
        for prefix, found, sign, deep in (("like", like, 1.0, depth), ("unlike", unlike, -negative, unlike_depth)):
            for column, signal in by_column.items():
                lists = [vector_search(model, column, v[column], deep, filters=filters) for v in found if column in v]
                if lists and sign:
                    rankings[f"{prefix}:{signal.name}"] = _best_of(lists, deep)
                    weights[f"{prefix}:{signal.name}"] = sign * weight
    if examples.avoid and negative:
        kind_weights = {KEYWORD.name: 1.0} if mode == "keyword" or model is None else fusion_weights(model, mode)
        scale = total / sum(kind_weights.values())
        per_phrase = [signal_rankings(model, kind_weights, depth, filters, q=words) for words in examples.avoid]
        for name, weight in kind_weights.items():
            lists = [found[name] for found in per_phrase if found.get(name)]
            if lists:
                rankings[f"avoid:{name}"] = _best_of(lists, depth)
                weights[f"avoid:{name}"] = -negative * weight * scale
    return rankings, weights


POPULARITY = "popularity"


def with_popularity(
    rankings: dict[str, Ranking], weights: dict[str, float] | None, weight: float, pool: list[int] | None = None
) -> tuple[dict[str, Ranking], dict[str, float] | None]:
    """The rankings plus one list "popularity": the candidates (`pool`, else every product the
    lists returned) that shoppers clicked, most clicked first by time-decayed clicks
    (catalog/popularity.py), fused with `weight`. It only re-orders what the query found:
    a popular product the query did not find is never added."""
    if pool is None:
        pool = sorted({pid for ranking in rankings.values() for pid, _ in ranking})
    clicked = product_popularity(pool)
    if not clicked:
        return rankings, weights
    weights = dict(weights) if weights is not None else dict.fromkeys(rankings, 1.0)
    return {**rankings, POPULARITY: clicked}, {**weights, POPULARITY: weight}


def best_photos(rankings: dict[str, Ranking], weights: dict[str, float]) -> dict[int, int]:
    """PhotoRanking.photos of lists fused into one: each product's photo from the heaviest
    list that placed it."""
    chosen: dict[int, int | None] = {}
    for name in sorted(rankings, key=lambda n: -weights.get(n, 1.0)):
        ranking = rankings[name]
        if isinstance(ranking, PhotoRanking):
            for pid, _ in ranking:
                chosen.setdefault(pid, ranking.photos.get(pid))
    return {pid: photo for pid, photo in chosen.items() if photo is not None}


def attach_photos(hits: list[Hit], rankings: dict[str, Ranking]) -> None:
    """Set each hit's `photo`: the photo that placed it in the photo list that did most for
    it (its explanation is best first). Loads the hits' photos in one query unless they came
    with the products (products_with_photos)."""
    prefetch_related_objects([h.product for h in hits if not hasattr(h.product, FURTHER_PHOTOS)], "photos")
    for hit in hits:
        for c in hit.explanation:
            ranking = rankings.get(c.signal)
            if c.rank is not None and isinstance(ranking, PhotoRanking):
                photo_id = ranking.photos.get(hit.product.pk)
                hit.photo = next((p for p in hit.product.gallery() if p.photo_id == photo_id), None)
                break


def explain(hits: list[Hit], rankings: dict[str, Ranking], weights: dict[str, float] | None, fused: bool) -> None:
    """Fill each hit's explanation from the lists it was ranked from, as fuse()/rrf() scored
    it: one list keeps its own score; fused lists add weight / (k + rank), divided by the
    best score possible, so the shares sum to the hit's score. Lists that returned nothing
    or weigh 0 take no part (rrf skips them); a list of what to avoid has a negative weight
    and takes its share away."""
    weights = weights or {}
    wanted = {h.product.pk for h in hits}
    places: dict[str, dict[int, tuple[int, float]]] = {}
    rank: int | None  # a hit's place in one list, None where that list does not hold it
    score: float | None
    for name, ranking in rankings.items():
        found: dict[int, tuple[int, float]] = {}
        for rank, (pid, score) in enumerate(ranking, start=1):
            if pid in wanted and pid not in found:
                found[pid] = (rank, score)
        places[name] = found
    live = {n: float(weights.get(n, 1.0)) for n, r in rankings.items() if r and float(weights.get(n, 1.0)) != 0}
    k = settings.SEARCH_RRF_K
    best = sum(w / (k + 1) for w in live.values() if w > 0) or 1.0
    for hit in hits:
        parts = []
        for name, weight in (live if fused else {n: 1.0 for n in rankings}).items():
            rank, score = places[name].get(hit.product.pk, (None, None))
            if not fused:
                share = score or 0.0
            else:
                share = weight / (k + rank) / best if rank is not None else 0.0
            parts.append(Contribution(name, rank, score, weight, share))
        parts.sort(key=lambda c: (c.rank is None, -c.share))
        hit.explanation = parts


def _price_order(scored: list[tuple[int, float, dict]], descending: bool) -> list[tuple[int, float, dict]]:
    """The candidates (id, score, sources) still in the catalogue, by price. Only the prices
    are read: the page's products are loaded after, not every candidate's (200 by default)."""
    prices = dict(Product.objects.filter(pk__in=[pid for pid, _, _ in scored]).values_list("pk", "price"))
    ranked = [s for s in scored if s[0] in prices]
    # Stable: equal prices keep their relevance order.
    ranked.sort(key=lambda s: prices[s[0]], reverse=descending)
    return ranked


def search(
    q: str | None = None,
    image: Image.Image | None = None,
    *,
    mode: str | None = None,
    filters: Filters = NO_FILTERS,
    k: int = 24,
    offset: int = 0,
    sort: str = "relevance",
    min_score: float | None = None,
    image_vector: QueryVectors | None = None,
    model: EmbeddingModel | None = None,
    signals: Sequence[str] | None = None,
    correct: bool = False,
    popularity: float | None = None,
    examples: Examples = NO_EXAMPLES,
    negations: bool = True,
    text_weight: float | None = None,
) -> SearchResult:
    """Search by words, a photo, or both; one page of hits, best first.

    ``mode`` (default settings.SEARCH_DEFAULT_MODE): "semantic" ranks by the active
    model's vectors, "keyword" by Postgres full text, "hybrid" fuses both by reciprocal
    rank (catalog/hybrid.py). A photo alone ranks by image similarity whatever the mode.
    Each list is read SEARCH_CANDIDATES deep (deeper for deep relevance pages, up to
    1,000); ``min_score`` drops candidates below it, and a price ``sort`` re-orders those
    candidates by price. ``image_vector`` replaces ``image`` with its stored query vectors.
    ``model`` searches another model's vectors than the active one's (the activation gate
    does); ``signals`` restricts a text search to the named signals (e.g. ["text_photo"]:
    the words against the photos alone, as if the products had no texts). ``correct``
    replaces misspelt words (catalog/suggest.py) in keyword and hybrid mode; the result
    says what it searched (``query``) and why (``correction``). ``popularity`` (default
    settings.SEARCH_POPULARITY_WEIGHT; 0 = off) fuses clicked products among the candidates
    as one more list with that weight (``with_popularity``).

    ``examples``: products and photos to find more (or less) like, and words to avoid;
    with ``negations`` the words' own "not x", "without x", "-x" become words to avoid
    (catalog/examples.py). Examples are searched and fused by example_rankings; the example
    products themselves are left out of the results. ``text_weight`` (0..1, default
    SEARCH_TEXT_WEIGHT) is how much the words weigh against the photo in a photo + words
    search (_photo_rankings).
    """
    started = time.perf_counter()
    mode = mode or settings.SEARCH_DEFAULT_MODE
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}: use one of {', '.join(SORTS)}")
    if k < 1 or offset < 0:
        raise ValueError("k must be >= 1 and offset >= 0")
    text_weight = check_text_weight(text_weight)
    q = (q or "").strip() or None
    has_photo = image is not None or image_vector is not None
    if q and negations:
        wanted, avoid = split_negations(q)
        # "not"/"no"/"without" words that would leave nothing to search for are a name, not a
        # wish to avoid something: "no smoking", "not equal" are searched as typed.
        if avoid and (wanted or has_photo or examples.has_positive or has_exclusions(q)):
            q = wanted or None
            examples = replace(examples, avoid=tuple(dict.fromkeys((*examples.avoid, *avoid))))
    if examples.count > settings.SEARCH_MAX_EXAMPLES:
        raise ExamplesRefused(
            f"too many examples: {examples.count} products, photos and words to avoid; "
            f"at most {settings.SEARCH_MAX_EXAMPLES} (SEARCH_MAX_EXAMPLES)"
        )
    if q is None and not has_photo and not examples.has_positive:
        if examples:
            raise ExamplesRefused(
                "nothing to search for: words to avoid and products to see less of need "
                "words, a photo or a product to find"
            )
        raise ValueError("nothing to search for: give words, a photo, or both")
    correction = correct_query(q) if correct and q and mode in ("keyword", "hybrid") else None
    if correction is not None:
        q = correction.corrected

    depth = settings.SEARCH_CANDIDATES
    if sort == "relevance":
        depth = max(depth, offset + k + 1)  # +1: is there a next page?
    depth = min(depth, MAX_DEPTH)

    model = model or EmbeddingModel.active()
    restrict: list[int] | None = None
    if has_photo:
        if model is None:
            raise SearchUnavailable("no embedding model is active yet: ingest a catalogue first")
        vectors = image_vector if image_vector is not None else image_query_vectors(model, image)  # type: ignore[arg-type]
        rankings, weights, restrict = _photo_rankings(model, vectors, q, mode, depth, filters, text_weight)
    elif q:
        rankings, weights = _text_rankings(model, q, mode, depth, filters, signals)
    else:  # examples alone
        rankings, weights = {}, {}
    boost = settings.SEARCH_POPULARITY_WEIGHT if popularity is None else popularity
    if boost > 0 and any(rankings.values()):
        rankings, weights = with_popularity(rankings, weights, boost, restrict)

    if examples:
        weights = {name: float((weights or {}).get(name, 1.0)) for name in rankings}
        # The examples weigh as much as the query's own lists (the popularity boost not counted).
        base = {name: w for name, w in weights.items() if name != POPULARITY}
        more, more_weights = example_rankings(model, examples, base, mode, depth, filters)
        rankings, weights = {**rankings, **more}, {**weights, **more_weights}
    if restrict is not None or examples:
        fused = rrf_scored(rankings, settings.SEARCH_RRF_K, weights, restrict)
        shown = set(examples.like) | set(examples.unlike)
        scored = [s for s in fused if s[0] not in shown]
    else:
        scored = fuse(rankings, weights)
    if min_score is not None:
        scored = [s for s in scored if s[1] >= min_score]
    scored = scored[:depth]

    if sort == "relevance":
        page_ids = scored[offset : offset + k]
    else:
        page_ids = _price_order(scored, descending=sort == "price_desc")[offset : offset + k]
    products = products_with_photos([pid for pid, _, _ in page_ids])
    hits = [Hit(products[pid], score, src) for pid, score, src in page_ids if pid in products]
    explain(hits, rankings, weights, fused=restrict is not None or bool(examples) or len(rankings) != 1)
    attach_photos(hits, rankings)
    return SearchResult(
        hits,
        (time.perf_counter() - started) * 1000,
        model,
        mode=mode,
        sort=sort,
        offset=offset,
        k=k,
        total_candidates=len(scored),
        has_next=offset + k < len(scored),
        query=q,
        correction=correction,
        candidates=[pid for pid, _, _ in scored],
        depth=depth,
        examples=examples,
        text_weight=text_weight if has_photo and q else None,
    )


def browse(filters: Filters = NO_FILTERS, *, k: int = 24, offset: int = 0, sort: str = "relevance") -> SearchResult:
    """A category/price listing without a query: newest first, or by price."""
    started = time.perf_counter()
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}: use one of {', '.join(SORTS)}")
    products = Product.objects.all()
    if filters.category:
        products = products.filter(category=filters.category)
    if filters.min_price is not None:
        products = products.filter(price__gte=filters.min_price)
    if filters.max_price is not None:
        products = products.filter(price__lte=filters.max_price)
    order = {"relevance": ["sku"], "price_asc": ["price", "sku"], "price_desc": ["-price", "sku"]}[sort]
    total = products.count()
    page = list(products.order_by(*order)[offset : offset + k])
    return SearchResult(
        [Hit(p, 0.0) for p in page],
        (time.perf_counter() - started) * 1000,
        EmbeddingModel.active(),
        mode="browse",
        sort=sort,
        offset=offset,
        k=k,
        total_candidates=total,
        has_next=offset + k < total,
    )


def search_by_text(query: str, k: int = 24, offset: int = 0, filters: Filters = NO_FILTERS) -> SearchResult:
    """Vector-only text search (the original behaviour); search() is the full entry point."""
    return search(query, mode="semantic", k=k, offset=offset, filters=filters)


def search_by_image(image: Image.Image, k: int = 24, offset: int = 0, filters: Filters = NO_FILTERS) -> SearchResult:
    return search(image=image, k=k, offset=offset, filters=filters)


def similar_products(product: Product, k: int = 8, by: str = "image") -> list[Hit]:
    """Neighbours of a product by its stored image or text vector under the active model."""
    model = active_model()
    column = "image_vec" if by == "image" else "text_vec"
    row = product.vectors.filter(model=model).values_list(column, flat=True).first()
    if row is None:
        return []
    return load_hits(vector_search(model, column, np.asarray(row, dtype=np.float32), k, exclude_product=product.pk), by)


def category_counts() -> list[tuple[str, int]]:
    rows = Product.objects.values("category").annotate(n=Count("id")).order_by("category")
    return [(r["category"], r["n"]) for r in rows]
