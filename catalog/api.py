"""JSON API. Contract: {"query", "took_ms", "results": [{sku, title, category, price, score,
image_url, thumbnail_url}, ...]} in rank order; bad input -> 400 (413 too large) naming it."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from catalog.query_image import UploadTooLarge, read_query_image
from catalog.search import SearchUnavailable, search_by_image, search_by_text
from catalog.serializers import hit_json

MAX_K = 100
MAX_QUERY_CHARS = 500


class BadRequest(ValueError):
    pass


def error(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def parse_k(raw: str | None, default: int = 24) -> int:
    if raw in (None, ""):
        return default
    try:
        k = int(raw)
    except ValueError as exc:
        raise BadRequest(f"k must be a whole number from 1 to {MAX_K}, got {raw[:20]!r}") from exc
    if not 1 <= k <= MAX_K:
        raise BadRequest(f"k must be from 1 to {MAX_K}, got {k}")
    return k


def parse_query(raw: str | None) -> str:
    query = (raw or "").strip()
    if not query:
        raise BadRequest("q is required: the text to search for")
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"q is longer than {MAX_QUERY_CHARS} characters")
    return query


@require_GET
def search_text(request: HttpRequest) -> JsonResponse:
    try:
        query = parse_query(request.GET.get("q"))
        k = parse_k(request.GET.get("k"))
        result = search_by_text(query, k=k)
    except BadRequest as exc:
        return error(str(exc))
    except SearchUnavailable as exc:
        return error(str(exc), 503)
    return JsonResponse(
        {"query": query, "took_ms": round(result.took_ms, 2), "results": [hit_json(request, h) for h in result.hits]}
    )


@csrf_exempt
@require_POST
def search_image(request: HttpRequest) -> JsonResponse:
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > settings.MAX_UPLOAD_BYTES + 64 * 1024:
        return error(f"request is {int(length):,} bytes; images up to {settings.MAX_UPLOAD_BYTES:,}", 413)
    upload = request.FILES.get("image")
    try:
        if upload is None:
            raise BadRequest("multipart field 'image' is required")
        k = parse_k(request.POST.get("k"))
        image = read_query_image(upload)
        result = search_by_image(image, k=k)
    except UploadTooLarge as exc:
        return error(str(exc), 413)
    except (BadRequest, ValueError) as exc:
        return error(str(exc))
    except SearchUnavailable as exc:
        return error(str(exc), 503)
    return JsonResponse(
        {
            "query": {"image": upload.name, "width": image.width, "height": image.height},
            "took_ms": round(result.took_ms, 2),
            "results": [hit_json(request, h) for h in result.hits],
        }
    )
