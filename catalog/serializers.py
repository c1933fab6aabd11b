"""Products and hits as JSON: the API's response shape (fields may be added, never renamed)."""

from __future__ import annotations

from django.http import HttpRequest

from catalog.models import Photo, Product
from catalog.search import Hit


def photo_json(request: HttpRequest, photo: Photo) -> dict:
    return {
        "position": photo.position,
        "image_url": request.build_absolute_uri(photo.image.url) if photo.image else None,
        "thumbnail_url": request.build_absolute_uri(photo.thumbnail.url) if photo.thumbnail else None,
    }


def product_json(request: HttpRequest, product: Product) -> dict:
    return {
        "sku": product.sku,
        "title": product.title,
        "category": product.category,
        "price": float(product.price),
        "image_url": request.build_absolute_uri(product.image.url) if product.image else None,
        "thumbnail_url": request.build_absolute_uri(product.thumbnail.url) if product.thumbnail else None,
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
