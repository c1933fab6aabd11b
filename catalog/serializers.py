"""Products and hits as JSON: the API's response shape (fields may be added, never renamed)."""

from __future__ import annotations

from django.db.models.fields.files import FieldFile
from django.http import HttpRequest

from catalog.models import Photo, Product
from catalog.search import Hit


def file_url(request: HttpRequest, file: FieldFile) -> str | None:
    """The file's absolute URL, None without a file. Each is worked out once per request: a
    hit names its main photo's files twice (product and gallery), and a storage's url() costs
    more than the rest of a hit's JSON."""
    if not file:
        return None
    urls: dict[tuple[int, str], str] = request.__dict__.setdefault("_file_urls", {})
    key = (id(file.storage), file.name or "")
    url = urls.get(key)
    if url is None:
        url = urls[key] = request.build_absolute_uri(file.url)
    return url


def photo_json(request: HttpRequest, photo: Photo) -> dict:
    return {
        "position": photo.position,
        "image_url": file_url(request, photo.image),
        "thumbnail_url": file_url(request, photo.thumbnail),
    }


def product_json(request: HttpRequest, product: Product) -> dict:
    return {
        "sku": product.sku,
        "title": product.title,
        "category": product.category,
        "price": float(product.price),
        "image_url": file_url(request, product.image),
        "thumbnail_url": file_url(request, product.thumbnail),
        "url": request.build_absolute_uri(product.get_absolute_url()),
        # every photo, the main `image` first (position 0)
        "photos": [photo_json(request, photo) for photo in product.gallery()],
    }


def hit_json(request: HttpRequest, hit: Hit) -> dict:
    # sources: the score each ranked list gave this product ("semantic", "keyword",
    # "image", "composed"); `score` is the one it is ranked by (fused in hybrid mode).
    return {
        **product_json(request, hit.product),
        "score": round(hit.score, 6),
        "sources": {name: round(value, 6) for name, value in hit.sources.items()},
        # the photo that placed it (its best photo in the photo list that did most for it)
        "matched_photo": photo_json(request, hit.photo) if hit.photo else None,
    }
