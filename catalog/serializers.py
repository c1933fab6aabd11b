"""Products and hits as JSON: the API's response shape (fields may be added, never renamed)."""

from __future__ import annotations

import re
from urllib.parse import quote

from django.core.files.storage import FileSystemStorage, Storage
from django.db.models.fields.files import FieldFile
from django.http import HttpRequest
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.encoding import filepath_to_uri
from django.utils.http import RFC3986_SUBDELIMS

from catalog.converters import SkuConverter
from catalog.models import Photo, Product
from catalog.search import Hit

# What reverse() leaves unescaped in a path (RFC 3986 pchar), as Django's URL resolver quotes it.
PATH_SAFE = RFC3986_SUBDELIMS + "/~:@"
_PLACEHOLDER = "vitrine-sku-placeholder"
_SKU_TO_URL = SkuConverter().to_url
# A path that urljoin() or build_absolute_uri() would rewrite (empty or dot segments), or that
# does not start with a slash: such URLs take Django's own path.
_NOT_PLAIN = re.compile(r"//|/\.\.?(?:/|\Z)|\A(?!/)")
_NOT_PATH = re.compile(r"[;?#]")
# Text that reverse() and the storages' URLs leave as it is: letters, digits, "-" and "_" (a
# sku), with "/", "." and "~" (a file name: filepath_to_uri quotes none of these). Most skus and
# every stored name (a content hash) are such; checking costs a fraction of escaping them.
_PLAIN_SKU = re.compile(r"[A-Za-z0-9_-]+")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_./~-]*")
_product_url_parts: dict[tuple[str, object], tuple[str, str] | None] = {}


def _url_prefix(request: HttpRequest, path: str) -> str:
    """request.build_absolute_uri(path), worked out once per request for a path that starts
    many URLs (build_absolute_uri(path + rest) is this + rest when rest is already escaped and
    makes no empty or dot segment)."""
    prefixes: dict[str, str] = request.__dict__.setdefault("_url_prefixes", {})
    absolute = prefixes.get(path)
    if absolute is None:
        absolute = prefixes[path] = request.build_absolute_uri(path)
    return absolute


def product_url(request: HttpRequest, product: Product) -> str:
    """request.build_absolute_uri(product.get_absolute_url()), character for character, without
    a reverse() per product: the product page's URL is resolved once per script prefix (and
    URL conf) with a placeholder sku, and each sku is escaped as reverse() escapes it."""
    sku = product.sku
    key = (get_script_prefix(), get_urlconf())
    if key not in _product_url_parts:
        head, found, tail = reverse("catalog:product", args=[_PLACEHOLDER]).rpartition(_PLACEHOLDER)
        _product_url_parts[key] = (head, tail) if found and not _NOT_PLAIN.search(head + "x" + tail) else None
    parts = _product_url_parts[key]
    # reverse() refuses a sku its pattern (".+") does not match: empty or with a line break
    if parts is None or not sku or "\n" in sku:
        return request.build_absolute_uri(product.get_absolute_url())
    head, tail = parts
    # SkuConverter gives every segment of dots a "~", so the escaped sku adds no dot segment
    escaped = sku if _PLAIN_SKU.fullmatch(sku) else quote(_SKU_TO_URL(sku), safe=PATH_SAFE)
    return _url_prefix(request, head) + escaped + tail


def file_url(request: HttpRequest, file: FieldFile) -> str | None:
    """The file's absolute URL, None without a file. Each is worked out once per request: a
    hit names its main photo's files twice (product and gallery). For Django's
    FileSystemStorage the URL is its base URL (made absolute once per request) joined with the
    escaped name, which is what its url() and build_absolute_uri() give, at a fraction of the
    cost; other storages answer through their own url()."""
    if not file:
        return None
    urls: dict[tuple[int, str], str] = request.__dict__.setdefault("_file_urls", {})
    storage = file.storage
    name = file.name or ""
    key = (id(storage), name)
    url = urls.get(key)
    if url is None:
        base = _plain_base(request, storage)
        if base is not None:
            rest = (name if _PLAIN_NAME.fullmatch(name) else filepath_to_uri(name)).lstrip("/")
            if not _NOT_PLAIN.search(base + rest):
                url = urls[key] = _url_prefix(request, base) + rest
                return url
        url = urls[key] = request.build_absolute_uri(file.url)
    return url


def _plain_base(request: HttpRequest, storage: Storage) -> str | None:
    """The base URL of a FileSystemStorage whose files' URLs are the base plus their escaped
    names (a plain path, "/media/": no host, query or parameters), None for any other
    storage; looked at once per request and storage."""
    bases: dict[int, str | None] = request.__dict__.setdefault("_file_bases", {})
    key = id(storage)
    if key not in bases:
        # __class__: default_storage is a lazy proxy whose own type is not the storage's
        base = storage.base_url if storage.__class__ is FileSystemStorage else None
        plain = base and base.endswith("/") and not _NOT_PLAIN.search(base) and not _NOT_PATH.search(base)
        bases[key] = base if plain else None
    return bases[key]


def photo_json(request: HttpRequest, photo: Photo) -> dict:
    return {
        "position": photo.position,
        "image_url": file_url(request, photo.image),
        "thumbnail_url": file_url(request, photo.thumbnail),
    }


def product_json(request: HttpRequest, product: Product) -> dict:
    image_url = file_url(request, product.image)
    thumbnail_url = file_url(request, product.thumbnail)
    return {
        "sku": product.sku,
        "title": product.title,
        "category": product.category,
        "price": float(product.price),
        "image_url": image_url,
        "thumbnail_url": thumbnail_url,
        "url": product_url(request, product),
        # every photo, the main `image` first (position 0: the product's own files, as gallery())
        "photos": [
            {"position": 0, "image_url": image_url, "thumbnail_url": thumbnail_url},
            *(photo_json(request, photo) for photo in product.further_photos()),
        ],
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
