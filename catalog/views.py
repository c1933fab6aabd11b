from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render

from catalog import openapi
from catalog.api import BadRequest, parse_k, parse_query
from catalog.models import Product
from catalog.query_image import read_query_image
from catalog.search import SearchUnavailable, search_by_image, search_by_text, similar_products


def search_page(request: HttpRequest) -> HttpResponse:
    context: dict = {"query": request.GET.get("q", "")}
    try:
        if request.method == "POST" and request.FILES.get("image"):
            image = read_query_image(request.FILES["image"])
            context["result"] = search_by_image(image, k=parse_k(request.POST.get("k")))
            context["query_kind"] = "image"
        elif context["query"].strip():
            context["result"] = search_by_text(parse_query(context["query"]), k=parse_k(request.GET.get("k")))
            context["query_kind"] = "text"
    except (BadRequest, ValueError, SearchUnavailable) as exc:
        context["error"] = str(exc)
    status = 400 if "error" in context else 200
    return render(request, "catalog/search.html", context, status=status)


def product_page(request: HttpRequest, sku: str) -> HttpResponse:
    product = get_object_or_404(Product, sku=sku)
    try:
        by_image = similar_products(product, by="image")
        by_text = similar_products(product, by="text")
    except SearchUnavailable:
        by_image = by_text = []
    return render(request, "catalog/product.html", {"product": product, "by_image": by_image, "by_text": by_text})


def openapi_schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi.schema())
