from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from catalog import openapi
from catalog.analytics import log_search
from catalog.api import BadRequest, form_examples, parse_flag, parse_k, parse_query  # noqa: F401  (kept importable here)
from catalog.facets import CENT, Facets, search_facets
from catalog.forms import MODE_LABELS, SORT_LABELS, SearchForm
from catalog.models import Product
from catalog.query_image import find_query_image, query_vector, read_query_image, store_query_image
from catalog.ratelimit import rate_limit
from catalog.search import (
    Filters,
    SearchResult,
    SearchUnavailable,
    active_model,
    browse,
    category_counts,
    check_text_weight,
    image_query_vectors,
    reuse_query_vectors,
    search,
    similar_products,
)
from searchsite.db_router import reads_search_database


def _url(form: SearchForm, **changes: Any) -> str:
    params = form.params(**changes)
    return reverse("catalog:search") + ("?" + urlencode(params, doseq=True) if params else "")


def _pages(form: SearchForm, total: int, keep: dict[str, str]) -> list[dict[str, Any]]:
    count = max(1, math.ceil(total / form.per_page_k))
    current = form.page_number
    shown = sorted({1, count, *range(max(1, current - 2), min(count, current + 2) + 1)})
    pages: list[dict[str, Any]] = []
    for number in shown:
        if pages and number - pages[-1]["number"] > 1:
            pages.append({"number": number - 1, "gap": True})
        pages.append({"number": number, "url": _url(form, page=number, **keep), "current": number == current})
    return pages


@require_http_methods(["GET", "HEAD", "POST"])
@rate_limit("search", "SEARCH_RATE_LIMIT", methods=("GET", "HEAD"))
@rate_limit("photo", "PHOTO_SEARCH_RATE_LIMIT", methods=("POST",))
@reuse_query_vectors()
@reads_search_database
def search_page(request: HttpRequest) -> HttpResponse:
    """The shop's search page. A photo upload (POST) is stored and redirected to ?img=<id>,
    so every search, photo or not, lives in a URL that pages, filters and reloads."""
    if request.method == "POST":
        return _photo_upload(request)
    form = SearchForm(request.GET)
    context: dict[str, Any] = {"form": form, "sort_labels": SORT_LABELS, "mode_labels": MODE_LABELS}
    status = 200
    try:
        if not form.is_valid():
            raise BadRequest(form.first_error())
        context["query"] = form.query
        correct = parse_flag(request.GET.get("correct"), "correct", True)
        # correct=0 ("search instead for what I typed") holds for this query's pages only
        keep = {} if correct else {"correct": "0"}
        context["keep_uncorrected"] = not correct
        vector = None
        examples = form_examples(form)
        if form.image_key:
            stored = find_query_image(form.image_key)
            if stored is None:
                raise BadRequest("That photo search has expired. Please upload the photo again.")
            context["photo"] = stored
            weight = check_text_weight(form.words_weight)  # the form validated the range
            context["text_weight"] = {
                "value": weight,
                "percent": round(100 * weight),
                "photo_percent": 100 - round(100 * weight),
            }
            vector = query_vector(stored, active_model())
            result = search(
                form.query,
                **form.search_arguments(),
                image_vector=vector,
                correct=correct,
                examples=examples,
            )
            context["query_kind"] = "photo+text" if form.query else "photo"
        elif form.query or form.has_examples:
            result = search(
                form.query,
                **form.search_arguments(),
                correct=correct,
                examples=examples,
            )
            context["query_kind"] = "text" if form.query else "examples"
        elif form.filters.category or form.filters.min_price is not None or form.filters.max_price is not None:
            result = browse(form.filters, k=form.per_page_k, offset=form.offset, sort=form.sort_order)
            context["query_kind"] = "browse"
        else:
            result = None
        if (
            result is not None
            and context.get("query_kind") in ("text", "photo", "photo+text")
            and request.method == "GET"
        ):
            # query_id: a later page of the same search (the page's script sends it when paging);
            # replaces: the search the shopper was still typing
            context["query_id"] = log_search(
                result,
                text=form.query,
                kind=context["query_kind"],
                source="page",
                page=form.page_number,
                same_as=request.GET.get("query_id"),
                replaces=request.GET.get("replaces"),
                request=request,
            )
        if result is not None:
            context["result"] = result
            context["cards"] = _cards(form, result, keep)
            context["example_chips"] = _example_chips(form, result, keep)
            context["pages"] = _pages(form, result.total_candidates, keep)
            context["first_rank"] = result.offset + 1
            context["last_rank"] = result.offset + len(result.hits)
            context["show_scores"] = result.mode != "browse"
            context["next_url"] = _url(form, page=form.page_number + 1, **keep) if result.has_next else ""
            context["prev_url"] = _url(form, page=form.page_number - 1, **keep) if form.page_number > 1 else ""
            facets = search_facets(result, form.filters, image_vector=vector, min_score=form.score_cutoff)
            context["facets"] = _facet_links(form, facets, keep)
            if result.correction:
                context["correction"] = result.correction
                context["uncorrected_url"] = _url(form, page=None, correct="0")
        context["results_url"] = _url(form, **keep) if form.is_valid() else ""
        context["clear_photo_url"] = _url(form, img=None, page=None) if form.is_bound and form.is_valid() else ""
        context["clear_filters_url"] = (
            _url(form, category=None, min_price=None, max_price=None, min_score=None, page=None)
            if form.is_valid() and (form.filters != Filters() or form.score_cutoff is not None)
            else ""
        )
    except (BadRequest, ValueError) as exc:
        context["error"] = str(exc)
        status = 400
    except SearchUnavailable as exc:
        context["error"] = str(exc)
        status = 503
    if "facets" not in context:  # the filter panel lists the catalogue's categories instead
        context["categories"] = category_counts()
    if "result" not in context and "error" not in context:
        context["showcase"] = _showcase(context["categories"])
    template = "catalog/_results.html" if request.GET.get("fragment") else "catalog/search.html"
    return render(request, template, context, status=status)


def _cards(form: SearchForm, result: SearchResult, keep: dict[str, str]) -> list[dict[str, Any]]:
    """Each hit with the links that refine the search by it: more like it, less like it."""
    if result.mode == "browse":
        return [{"hit": hit} for hit in result.hits]
    like, unlike = form.example_values("like"), form.example_values("unlike")
    return [
        {
            "hit": hit,
            "more_url": _url(
                form,
                page=None,
                **keep,
                like=like + [hit.product.sku],
                unlike=[s for s in unlike if s != hit.product.sku],
            ),
            "less_url": _url(
                form,
                page=None,
                **keep,
                unlike=unlike + [hit.product.sku],
                like=[s for s in like if s != hit.product.sku],
            ),
        }
        for hit in result.hits
    ]


def _example_chips(form: SearchForm, result: SearchResult, keep: dict[str, str]) -> list[dict[str, Any]]:
    """The query's examples as chips, each with the link that removes it (words to avoid typed
    in the search box are shown too; they go when the words do)."""
    chips: list[dict[str, Any]] = []
    products = Product.objects.in_bulk(form.example_values("like") + form.example_values("unlike"), field_name="sku")
    for name, sign in (("like", "More like"), ("unlike", "Less like")):
        values = form.example_values(name)
        for sku in values:
            product = products.get(sku)
            chips.append(
                {
                    "field": name,
                    "value": sku,
                    "kind": name,
                    "sign": sign,
                    "text": product.title if product else sku,
                    "product": product,
                    "remove_url": _url(form, page=None, **keep, **{name: [v for v in values if v != sku]}),
                }
            )
    for name, sign in (("like_img", "More like"), ("unlike_img", "Less like")):
        values = form.example_values(name)
        for key in values:
            chips.append(
                {
                    "field": name,
                    "value": key,
                    "kind": name.removesuffix("_img"),
                    "sign": sign,
                    "text": "your photo",
                    "photo_url": reverse("catalog:query-photo", args=[key]),
                    "remove_url": _url(form, page=None, **keep, **{name: [v for v in values if v != key]}),
                }
            )
    explicit = form.example_values("avoid")
    for words in result.examples.avoid:
        chips.append(
            {
                "field": "avoid" if words in explicit else "",
                "value": words,
                "kind": "avoid",
                "sign": "Not",
                "text": words,
                "remove_url": _url(form, page=None, **keep, avoid=[w for w in explicit if w != words])
                if words in explicit
                else "",
            }
        )
    return chips


def _facet_links(form: SearchForm, facets: Facets, keep: dict[str, str]) -> dict[str, Any]:
    """The facets with the link each choice leads to; a zero count is shown disabled."""
    tallest = max((b.count for b in facets.prices), default=0) or 1
    return {
        "axis_low": facets.prices[0].low if facets.prices else None,
        "axis_high": facets.prices[-1].high + CENT if facets.prices else None,
        "basis": facets.basis,
        "matched": facets.matched,
        "pool": facets.pool,
        "categories": [
            {"name": c.name, "count": c.count, "selected": c.selected, "disabled": not c.count and not c.selected}
            for c in facets.categories
        ],
        "prices": [
            {
                "low": b.low,
                "high": b.high,
                "count": b.count,
                "selected": b.selected,
                "height": round(100 * b.count / tallest),
                # choosing the chosen range again clears it
                "url": _url(
                    form,
                    page=None,
                    **keep,
                    **(
                        {"min_price": None, "max_price": None}
                        if b.selected
                        else {"min_price": b.low, "max_price": b.high}
                    ),
                ),
            }
            for b in facets.prices
        ],
    }


def _showcase(categories: list[tuple[str, int]]) -> list[dict[str, Any]]:
    tiles = []
    for name, count in categories[:12]:
        product = Product.objects.filter(category=name).order_by("sku").first()
        tiles.append(
            {
                "name": name,
                "count": count,
                "product": product,
                "url": reverse("catalog:search") + "?" + urlencode({"category": name}),
            }
        )
    return tiles


def _photo_upload(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.POST)
    context: dict[str, Any] = {"form": SearchForm({}), "sort_labels": SORT_LABELS, "mode_labels": MODE_LABELS}
    try:
        context["categories"] = category_counts()
        if not form.is_valid():
            raise BadRequest(form.first_error())
        upload = request.FILES.get("image")
        if upload is None:
            raise BadRequest("Choose a photo to search with.")
        image = read_query_image(upload)
        model = active_model()
        stored = store_query_image(image, model, image_query_vectors(model, image), upload.name or "")
    except SearchUnavailable as exc:
        context["error"] = str(exc)
        return render(request, "catalog/search.html", context, status=503)
    except ValueError as exc:  # BadRequest, UploadTooLarge, ImageError
        context["error"] = f"We could not use that photo: {exc}."
        return render(request, "catalog/search.html", context, status=400)
    return redirect(_url(form, img=stored.key, page=None), permanent=False)


def query_photo(request: HttpRequest, key: str) -> HttpResponse:
    stored = find_query_image(key)
    if stored is None:
        raise Http404("no such photo search")
    response = HttpResponse(bytes(stored.photo), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@rate_limit("search", "SEARCH_RATE_LIMIT")
@reads_search_database
def product_page(request: HttpRequest, sku: str) -> HttpResponse:
    product = get_object_or_404(Product, sku=sku)
    try:
        by_image = similar_products(product, k=8, by="image")
        by_text = similar_products(product, k=8, by="text")
    except SearchUnavailable:
        by_image = by_text = []
    category_url = reverse("catalog:search") + "?" + urlencode({"category": product.category})
    back_url = request.GET.get("back") if _is_local(request.GET.get("back")) else ""
    gallery = product.gallery()
    # ?photo=N opens the gallery at photo N (a result card links to the photo that matched);
    # anything else opens it at the main photo.
    raw = request.GET.get("photo", "")
    shown = gallery[int(raw)] if raw.isdigit() and int(raw) < len(gallery) else gallery[0]
    return render(
        request,
        "catalog/product.html",
        {
            "product": product,
            "by_image": by_image,
            "by_text": by_text,
            "category_url": category_url,
            "back_url": back_url,
            "shown": shown,
            "gallery": [(photo, _url_with(request, photo=photo.position or None)) for photo in gallery],
        },
    )


def _url_with(request: HttpRequest, **changes: object) -> str:
    """This page's URL with some query parameters changed (None removes one)."""
    params = request.GET.copy()
    for name, value in changes.items():
        params.pop(name, None)
        if value is not None:
            params[name] = str(value)
    return "?" + params.urlencode() if params else request.path


def _is_local(url: str | None) -> bool:
    return url is not None and url.startswith("/") and not url.startswith("//")


def openapi_schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi.schema())
