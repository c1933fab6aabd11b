"""JSON API. Contract: {"query", "took_ms", "results": [{sku, title, category, price, score,
image_url, thumbnail_url}, ...]} in rank order; bad input -> 400 (413 too large) naming it.
Fields may be added (mode, page, has_next, total_candidates, per-result sources), never
renamed or removed. docs/search.md and /api/openapi.json describe the parameters."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from typing import Any

import numpy as np

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import get_script_prefix
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from catalog.analytics import ClickRefused, log_search, record_click
from catalog import search_cache
from catalog.examples import NO_EXAMPLES, Examples, ExamplesRefused, QueryVectors
from catalog.jobs import job_state
from catalog.models import ImportJob, Product
from catalog.tokens import token_required
from catalog.uploads import UploadRefused, check_upload, queue_import
from catalog.forms import MAX_K, MAX_QUERY_CHARS, SearchForm
from catalog.query_image import (
    UploadTooLarge,
    find_query_image,
    query_vector,
    read_query_image,
    store_query_image,
)
from catalog.facets import Facets, search_facets
from catalog.search import (
    Hit,
    SearchResult,
    SearchUnavailable,
    active_model,
    category_counts,
    image_query_vectors,
    reuse_query_vectors,
    search,
)
from catalog.search_cache import reports_cache_use
from catalog.ratelimit import rate_limit
from catalog.serializers import hit_json
from catalog.suggest import MAX_PREFIX_CHARS, suggest
from embeddings.models import EmbeddingModel
from searchsite.db_router import reads_search_database

__all__ = ["BadRequest", "parse_k", "parse_query", "MAX_K", "MAX_QUERY_CHARS"]


class BadRequest(ValueError):
    pass


_active: dict[int, Any] = {}  # catalogue version -> the active model then (a switch bumps it)


def cached_search(
    q: str | None = None,
    *,
    request: HttpRequest,
    image_vector: dict[str, np.ndarray] | None = None,
    examples: Any = None,
    **options: Any,
) -> SearchResult:
    """catalog.search.search() through the result-page cache: the same page of the same query
    under the same catalogue version and model, asked at the same site address, is served
    from memory (or Redis) as the JSON its hits were rendered to for `request` (`rendered`;
    its `hits` are then empty). Searches with examples, or run inside a transaction, are not
    cached. Options must be hashable (Filters is)."""
    examples = examples or NO_EXAMPLES
    version = search_cache.catalogue_version() if search_cache.result_pages_enabled() and not examples else None
    if version is None:
        return search(q, image_vector=image_vector, examples=examples, **options)
    started = time.perf_counter()
    if version not in _active:
        _active.clear()
        _active[version] = EmbeddingModel.active()
    model = _active[version]
    key = (
        version,
        # the database the version counts: only where pages are shared with other processes
        search_cache.database_identity() if search_cache.shared_configured() else None,
        search_cache.model_key(model) if model is not None else None,
        q,
        search_cache.vectors_digest(image_vector) if image_vector is not None else None,
        tuple(sorted(options.items())),
        settings.SEARCH_POPULARITY_WEIGHT,
        settings.SEARCH_DEFAULT_MODE,
        # the hits' URLs name the site they were asked at, its script prefix (SCRIPT_NAME) included
        request.build_absolute_uri(get_script_prefix()),
    )
    cached = search_cache.result_pages.get(key)
    if cached is not None:
        return replace(cached, took_ms=(time.perf_counter() - started) * 1000)
    with search_cache.at_version(version):
        result = search(q, image_vector=image_vector, examples=examples, model=model, **options)
    rendered_hits(request, result)
    # Without the products: a page read from Redis is unpickled in a fraction of the time.
    search_cache.result_pages.put(key, replace(result, hits=[]))
    return result


def search_with_facets(
    request: HttpRequest,
    form: SearchForm,
    vector: QueryVectors | None,
    correct: bool,
    examples: Examples,
    want_facets: bool,
) -> tuple[SearchResult, Facets | None]:
    """The page of results a search form asks for (through the result-page cache), and its
    facets when asked: what GET /api/search and POST /api/search/image both answer."""
    result = cached_search(
        form.query,
        request=request,
        **form.search_arguments(),
        image_vector=vector,
        correct=correct,
        examples=examples,
    )
    facets = (
        search_facets(result, form.filters, image_vector=vector, min_score=form.score_cutoff) if want_facets else None
    )
    return result, facets


def error(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def parse_k(raw: str | None, default: int = 24, maximum: int = MAX_K) -> int:
    if raw in (None, ""):
        return default
    try:
        k = int(raw)
    except ValueError as exc:
        raise BadRequest(f"k must be a whole number from 1 to {maximum}, got {raw[:20]!r}") from exc
    if not 1 <= k <= maximum:
        raise BadRequest(f"k must be from 1 to {maximum}, got {k}")
    return k


def parse_query(raw: str | None) -> str:
    query = (raw or "").strip()
    if not query:
        raise BadRequest("q is required: the text to search for")
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"q is longer than {MAX_QUERY_CHARS} characters")
    return query


def parse_flag(raw: str | None, name: str, default: bool) -> bool:
    if raw in (None, ""):
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"{name} must be true or false (or 1 or 0), got {raw[:20]!r}")


def form_examples(form: SearchForm) -> Examples:
    """The form's example products and photos looked up (skus -> ids, photo ids -> vectors);
    an unknown sku or an unknown or expired photo id is a BadRequest naming it."""
    if not form.has_examples:
        return Examples()
    products: dict[str, tuple[int, ...]] = {}
    for name in ("like", "unlike"):
        wanted = form.example_values(name)
        found = dict(Product.objects.filter(sku__in=wanted).values_list("sku", "pk"))
        unknown = [sku for sku in wanted if sku not in found]
        if unknown:
            raise BadRequest(f"{name}: no product with sku {unknown[0][:60]!r}")
        products[name] = tuple(found[sku] for sku in wanted)
    photos: dict[str, tuple] = {}
    for name in ("like_img", "unlike_img"):
        vectors = []
        for key in form.example_values(name):
            stored = find_query_image(key)
            if stored is None:
                raise BadRequest(f"{name}: photo search {key!r} is unknown or expired: upload the photo again")
            vectors.append(query_vector(stored, active_model()))
        photos[name] = tuple(vectors)
    return Examples(
        like=products["like"],
        unlike=products["unlike"],
        like_photos=photos["like_img"],
        unlike_photos=photos["unlike_img"],
        avoid=tuple(form.example_values("avoid")),
    )


def examples_json(form: SearchForm, result: SearchResult) -> dict:
    """The examples searched with; `avoid` includes the words' own "not x" / "-x"."""
    return {
        **{name: form.example_values(name) for name in ("like", "unlike", "like_img", "unlike_img")},
        "avoid": list(result.examples.avoid),
    }


def explanation_json(hit: Hit) -> list[dict]:
    return [
        {
            "signal": c.signal,
            "label": c.label,
            "rank": c.rank,
            "score": None if c.score is None else round(c.score, 6),
            "weight": c.weight,
            "contribution": round(c.share, 6),
        }
        for c in hit.explanation
    ]


def facets_json(facets: Facets) -> dict:
    return {
        "basis": facets.basis,
        "matched": facets.matched,
        "pool": facets.pool,
        "categories": [{"name": c.name, "count": c.count, "selected": c.selected} for c in facets.categories],
        "prices": [
            {"min_price": float(b.low), "max_price": float(b.high), "count": b.count, "selected": b.selected}
            for b in facets.prices
        ],
    }


def json_bytes(value: Any) -> bytes:
    """What JsonResponse would send for `value`."""
    return json.dumps(value, cls=DjangoJSONEncoder).encode()


def rendered_hits(request: HttpRequest, result: SearchResult) -> bytes:
    """The page's hits as the API's JSON, rendered once per result (cached_search keeps the
    rendering with the cached page, which is served many times)."""
    if result.rendered is None:
        result.rendered = json_bytes(
            [{**hit_json(request, h), "explanation": explanation_json(h)} for h in result.hits]
        )
    return result.rendered


def result_json(
    request: HttpRequest,
    form: SearchForm,
    query: Any,
    result: SearchResult,
    facets: Facets | None = None,
    query_id: uuid.UUID | None = None,
) -> bytes:
    """The answer's JSON, byte for byte what JsonResponse would send for the whole body, with
    the page's rendered hits put in as they are, never decoded and encoded again."""
    head = {
        "query": query,
        "query_id": str(query_id) if query_id else None,
        "took_ms": round(result.took_ms, 2),
    }
    body = {
        "mode": result.mode,
        "sort": result.sort,
        "page": form.page_number,
        "k": form.per_page_k,
        "has_next": result.has_next,
        "total_candidates": result.total_candidates,
        "model": result.model.name if result.model else None,
        "corrected_query": result.correction.corrected if result.correction else None,
        "corrections": result.correction.words if result.correction else {},
        "searched": result.query,
        "text_weight": result.text_weight,
        "examples": examples_json(form, result),
    }
    if facets is not None:
        body["facets"] = facets_json(facets)
    # {head..., "results": [...], body...}: both dicts are non-empty
    return b"".join(
        (json_bytes(head)[:-1], b', "results": ', rendered_hits(request, result), b", ", json_bytes(body)[1:])
    )


def json_answer(body: bytes) -> HttpResponse:
    return HttpResponse(body, content_type="application/json")


@require_GET
@rate_limit("search", "SEARCH_RATE_LIMIT", json=True)
@reports_cache_use
@reuse_query_vectors()
@reads_search_database
def search_text(request: HttpRequest) -> HttpResponse:
    """GET /api/search: words (q) and/or a stored photo (img) with filters and paging."""
    form = SearchForm(request.GET)
    if not form.is_valid():
        return error(form.first_error())
    if not form.query and not form.image_key and not form.has_examples:
        return error(
            "q is required: the text to search for (or img, the id of a photo search, or like, "
            "a product to find more like)"
        )
    try:
        want_facets = parse_flag(request.GET.get("facets"), "facets", False)
        correct = parse_flag(request.GET.get("correct"), "correct", True)
    except BadRequest as exc:
        return error(str(exc))
    try:
        vector = None
        if form.image_key:
            stored = find_query_image(form.image_key)
            if stored is None:
                return error(f"img {form.image_key!r} is unknown or expired: upload the photo again", 404)
            vector = query_vector(stored, active_model())
        examples = form_examples(form)
        result, facets = search_with_facets(request, form, vector, correct, examples, want_facets)
    except SearchUnavailable as exc:
        return error(str(exc), 503)
    except ValueError as exc:  # BadRequest, or search() refusing the examples
        return error(str(exc))
    query: Any = form.query if not form.image_key else {"q": form.query, "image_id": form.image_key}
    kind = "text" if not form.image_key else ("photo+text" if form.query else "photo")
    # Examples alone (no words, no photo) are not a query to count in the search log.
    query_id = (
        log_search(
            result,
            text=form.query,
            kind=kind,
            source="api",
            page=form.page_number,
            same_as=request.GET.get("query_id"),
            request=request,
        )
        if form.query or form.image_key
        else None
    )
    return json_answer(result_json(request, form, query, result, facets, query_id))


@csrf_exempt
@require_POST
@rate_limit("photo", "PHOTO_SEARCH_RATE_LIMIT", json=True)
@reports_cache_use
@reuse_query_vectors()
@reads_search_database
def search_image(request: HttpRequest) -> HttpResponse:
    """POST /api/search/image: multipart `image`, optional `q` (a composed query) and the
    same fields as GET /api/search. The answer's query.image_id pages it via GET."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > settings.MAX_UPLOAD_BYTES + 64 * 1024:
        return error(f"request is {int(length):,} bytes; images up to {settings.MAX_UPLOAD_BYTES:,}", 413)
    try:
        data, files = request.POST, request.FILES
    except MultiPartParserError as exc:  # no boundary, a broken body: Django would answer HTML
        return error(f"the body is not valid multipart/form-data: {exc}")
    form = SearchForm(data)
    if not form.is_valid():
        return error(form.first_error())
    try:
        want_facets = parse_flag(data.get("facets"), "facets", False)
        correct = parse_flag(data.get("correct"), "correct", True)
    except BadRequest as exc:
        return error(str(exc))
    upload = files.get("image")
    if upload is None:
        return error("multipart field 'image' is required")
    try:
        examples = form_examples(form)
        image = read_query_image(upload)
        model = active_model()
        vector = image_query_vectors(model, image)
        stored = store_query_image(image, model, vector, upload.name or "")
        result, facets = search_with_facets(request, form, vector, correct, examples, want_facets)
    except UploadTooLarge as exc:
        return error(str(exc), 413)
    except SearchUnavailable as exc:
        return error(str(exc), 503)
    except (BadRequest, ExamplesRefused) as exc:
        return error(str(exc))
    except ValueError as exc:
        return error(f"image: {exc}")
    query = {
        "image": upload.name,
        "width": image.width,
        "height": image.height,
        "image_id": stored.key,
        "q": form.query,
    }
    query_id = log_search(
        result,
        text=form.query,
        kind="photo+text" if form.query else "photo",
        source="api",
        page=form.page_number,
        request=request,
    )
    return json_answer(result_json(request, form, query, result, facets, query_id))


@require_GET
@rate_limit("search", "SEARCH_RATE_LIMIT", json=True)
@reads_search_database
def categories(request: HttpRequest) -> JsonResponse:
    """GET /api/categories: [{"name", "count"}] for the filter UI."""
    return JsonResponse({"categories": [{"name": n, "count": c} for n, c in category_counts()]})


MAX_SUGGESTIONS = 20


@require_GET
@rate_limit("suggest", "SEARCH_RATE_LIMIT", json=True)
@reads_search_database
def suggestions(request: HttpRequest) -> JsonResponse:
    """GET /api/suggest?q=<what has been typed>&k=: completions for the search box."""
    prefix = request.GET.get("q", "")
    if "\x00" in prefix:
        return error("q: Null characters are not allowed.")
    if len(prefix) > MAX_PREFIX_CHARS:
        return error(f"q is longer than {MAX_PREFIX_CHARS} characters")
    try:
        k = parse_k(request.GET.get("k"), default=8, maximum=MAX_SUGGESTIONS)
    except BadRequest as exc:
        return error(str(exc))
    found = suggest(prefix, k)
    return JsonResponse(
        {
            "query": prefix,
            "suggestions": [{"text": s.text, "kind": s.kind, "url": request.build_absolute_uri(s.url)} for s in found],
        }
    )


# A multipart body carries the file plus its headers and boundary; a little over the file limit.
MULTIPART_SLACK = 64 * 1024


def import_json(request: HttpRequest, job: ImportJob) -> dict:
    return {
        **job_state(job),
        "url": request.build_absolute_uri(f"/api/imports/{job.pk}"),
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


@require_POST
@token_required
def imports(request: HttpRequest) -> JsonResponse:
    """POST /api/imports (multipart `file`: a CSV, or a ZIP of CSV + images), staff token only:
    the admin's import (catalog.uploads.queue_import), answered 202 with the job to poll."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > settings.MAX_IMPORT_BYTES + MULTIPART_SLACK:
        return error(f"request is {int(length):,} bytes; imports up to {settings.MAX_IMPORT_BYTES:,}", 413)
    if not (request.content_type or "").startswith("multipart/form-data"):
        return error("send the file as multipart/form-data, in the field 'file'")
    try:
        upload = request.FILES.get("file")
    except (MultiPartParserError, SuspiciousOperation) as exc:  # Django would answer an HTML 400
        return error(f"the body is not valid multipart/form-data: {exc}")
    if upload is None:
        return error("multipart field 'file' is required: a .csv, or a .zip of the CSV and its images")
    try:
        check_upload(upload)
    except UploadRefused as exc:
        return error(f"file: {exc}", 413 if exc.too_large else 400)
    job = queue_import(upload)
    response = JsonResponse(import_json(request, job), status=202)
    response["Location"] = f"/api/imports/{job.pk}"
    return response


@require_GET
@token_required
def import_status(request: HttpRequest, job_id: str) -> JsonResponse:
    """GET /api/imports/<id>: counts, progress and row errors of an import, staff token only."""
    job = (
        ImportJob.objects.filter(pk=int(job_id)).first()
        if job_id.isascii() and job_id.isdigit() and len(job_id) < 10
        else None
    )
    if job is None:
        return error(f"no import {job_id[:30]!r}", 404)
    return JsonResponse(import_json(request, job))


@csrf_exempt  # navigator.sendBeacon from the search page; a click report changes no one's data
@require_POST
@rate_limit("click", "SEARCH_RATE_LIMIT", json=True)
def click(request: HttpRequest) -> HttpResponse:
    """POST /api/click (form fields or query string): query_id, sku, rank: a result was opened."""
    try:
        data = request.POST if request.POST else request.GET
    except (MultiPartParserError, SuspiciousOperation) as exc:
        return error(f"the body is not a valid form: {exc}")
    fields = {name: data.get(name) for name in ("query_id", "sku", "rank")}
    if any("\x00" in (value or "") for value in fields.values()):
        return error("Null characters are not allowed.")
    try:
        record_click(fields["query_id"], fields["sku"], fields["rank"])
    except ClickRefused as exc:
        return error(str(exc), exc.status)
    return HttpResponse(status=204)
