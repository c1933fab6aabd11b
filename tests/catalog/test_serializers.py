"""The API's product and hit JSON (catalog/serializers.py): the URLs worked out without a
reverse() or a storage url() per product are, character for character, what Django's own
reverse(), storage and build_absolute_uri() give, for any sku, file name, host and script
prefix; products loaded with their photos in one query show the same gallery."""

from __future__ import annotations

import json

import pytest
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection
from django.db.models import prefetch_related_objects
from django.db.models.fields.files import FieldFile
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import get_script_prefix, set_script_prefix
from PIL import Image

from catalog.models import Product, ProductPhoto, products_with_photos
from catalog.search import search
from catalog.serializers import file_url, product_url
from tests.catalog.test_photos import photo_shop, shop  # noqa: F401 (fixtures)

# Skus that need escaping: reserved and unsafe characters, unicode, percent signs, slashes,
# segments of dots (SkuConverter's "~"), empty segments.
SKUS = [
    "SM-001",
    "Ab_9-z",
    "a.b",
    "-_-",
    "a b",
    "a#b?c=d&e",
    "100%",
    "50%25",
    "a/b/c",
    "..",
    ".",
    "~..",
    "~~.",
    "./x",
    "a/./b",
    "a/../b",
    "a//b",
    "/lead",
    "trail/",
    "//x",
    "x:y@z;w",
    'it\'s "quoted" <b>',
    "ünïcödé-日本-😀",
    "[x]{y}|\\^`",
    "+plus+,comma!*()$",
    "vitrine-sku-placeholder",
]

REQUESTS = [
    {"HTTP_HOST": "127.0.0.1"},
    {"HTTP_HOST": "shop.example:8080", "wsgi.url_scheme": "https"},
    {"HTTP_HOST": "testserver"},
]


@pytest.fixture
def script_prefix():
    """Set the script prefix (as a WSGI SCRIPT_NAME would), restored afterwards."""
    before = get_script_prefix()
    yield set_script_prefix
    set_script_prefix(before)


@pytest.mark.parametrize("prefix", ["/", "/shop/", "/my shop/ü%/"])
def test_product_urls_are_what_reverse_gives(script_prefix, prefix, settings):
    settings.ALLOWED_HOSTS = ["*"]
    script_prefix(prefix)
    for extra in REQUESTS:
        request = RequestFactory().get("/api/search", **extra)
        for sku in SKUS:
            product = Product(sku=sku)
            assert product_url(request, product) == request.build_absolute_uri(product.get_absolute_url()), sku


def test_product_urls_follow_the_script_prefix_of_each_request(script_prefix):
    request = RequestFactory().get("/api/search")
    product = Product(sku="a b")
    script_prefix("/one/")
    assert product_url(request, product) == "http://testserver/one/p/a%20b/"
    script_prefix("/two/")
    assert product_url(RequestFactory().get("/api/search"), product) == "http://testserver/two/p/a%20b/"


FILE_NAMES = [
    "products/ab/cd.png",
    "products/a b#c?d.png",
    "products/ü-日本.png",
    "products/100%.png",
    "products/a:b;c=d&e.png",
    "/products/lead.png",
    "products//double.png",
    "products/./dot.png",
    "products/../up.png",
    "thumbs/x'y(z)*!~.jpg",
    "thumbs/A~b_c-D.9.jpg",
    "products/~/.png",
    "products/.",
]


@pytest.mark.parametrize(
    "media_url",
    ["/media/", "/m e/dïa/", "https://cdn.example/media/", "//cdn.example/m/", "/a/./b/", "/a;p/", "/m?q/", "/m#f/"],
)
def test_file_urls_are_what_the_storage_gives(media_url, settings):
    settings.ALLOWED_HOSTS = ["*"]
    settings.MEDIA_URL = media_url
    storages = [default_storage, FileSystemStorage(), FileSystemStorage(base_url="/other/")]
    for extra in REQUESTS:
        request = RequestFactory().get("/api/search", **extra)
        for storage in storages:
            for name in FILE_NAMES:
                file = FieldFile(None, Product._meta.get_field("image"), name)
                file.storage = storage
                expected = request.build_absolute_uri(storage.url(name))
                assert file_url(request, file) == expected, (media_url, storage.base_url, name)
                assert file_url(request, file) == expected  # and again, from the request's own cache


def test_a_storage_of_its_own_answers_through_its_url(settings):
    class Signed(FileSystemStorage):
        def url(self, name):
            return super().url(name) + "?signature=abc"

    request = RequestFactory().get("/api/search")
    file = FieldFile(None, Product._meta.get_field("image"), "products/x.png")
    file.storage = Signed()
    assert file_url(request, file) == "http://testserver/media/products/x.png?signature=abc"
    assert file_url(request, FieldFile(None, Product._meta.get_field("image"), "")) is None


def gallery_of(product: Product) -> list[tuple]:
    return [(p.position, p.image.name, p.thumbnail.name, p.photo_id) for p in product.gallery()]


def test_products_come_with_their_photos_in_one_query(photo_shop):
    # B-01 has three further photos; rows stored out of position order come in position order
    b01 = Product.objects.get(sku="B-01")
    ProductPhoto.objects.filter(product=b01, position=1).update(position=9)
    ProductPhoto.objects.filter(product=b01, position=9).update(position=1)
    ProductPhoto.objects.filter(product=b01, position=3).update(position=9)
    ids = list(Product.objects.values_list("pk", flat=True))
    with CaptureQueriesContext(connection) as queries:
        loaded = products_with_photos(ids)
        galleries = {pk: gallery_of(p) for pk, p in loaded.items()}
    assert len(queries) == 1
    expected = Product.objects.in_bulk(ids)
    prefetch_related_objects(list(expected.values()), "photos")
    assert galleries == {pk: gallery_of(p) for pk, p in expected.items()}
    assert [row[0] for row in galleries[b01.pk]] == [0, 1, 2, 9]
    assert len(galleries[Product.objects.get(sku="B-02").pk]) == 2


def test_products_are_what_a_queryset_loads(photo_shop):
    # every field's value and type, and the database the instance says it came from
    ids = list(Product.objects.values_list("pk", flat=True))
    Product.objects.filter(sku="B-02").update(thumbnail="", description="")
    loaded = products_with_photos([*ids, ids[0], 10**9])  # a repeat and an unknown id
    expected = Product.objects.in_bulk(ids)
    assert loaded.keys() == expected.keys()
    for pk, product in loaded.items():
        fields = {f.attname: getattr(product, f.attname) for f in Product._meta.concrete_fields}
        wanted = {f.attname: getattr(expected[pk], f.attname) for f in Product._meta.concrete_fields}
        assert fields == wanted
        assert [type(v) for v in fields.values()] == [type(v) for v in wanted.values()]
        assert (product._state.db, product._state.adding) == (expected[pk]._state.db, False)
    with CaptureQueriesContext(connection) as queries:
        assert products_with_photos([]) == {}
    assert len(queries) == 0


def reference_hit(request, product: Product) -> dict:
    """The URLs of a hit as serializers.py made them before (reverse() and storage url() for
    each), from the product loaded on its own."""

    def url(file):
        return request.build_absolute_uri(file.url) if file else None

    def photo(p):
        return {"position": p.position, "image_url": url(p.image), "thumbnail_url": url(p.thumbnail)}

    return {
        "image_url": url(product.image),
        "thumbnail_url": url(product.thumbnail),
        "url": request.build_absolute_uri(product.get_absolute_url()),
        "photos": [photo(p) for p in product.gallery()],
    }


@pytest.mark.parametrize("script_name", ["", "/shop"])
def test_search_answers_the_urls_django_gives(photo_shop, client, script_name, settings, script_prefix):
    settings.ALLOWED_HOSTS = ["*"]
    settings.SEARCH_RATE_LIMIT = ""
    # skus that need escaping, on products with and without further photos
    odd = {"B-01": "B 01/../#1?", "B-02": "ß/./x%20", "T-21": "..", "T-22": "a//b"}
    for old, new in odd.items():
        Product.objects.filter(sku=old).update(sku=new)
    # the prefix a WSGI server's SCRIPT_NAME sets (the test client does not set it)
    script_prefix(script_name + "/")
    answer = client.get(
        "/api/search",
        {"q": "striped tote ring bag item", "mode": "hybrid", "k": 10},
        HTTP_HOST="shop.example:8080",
        SCRIPT_NAME=script_name,
    )
    assert answer.status_code == 200, answer.content[:300]
    results = json.loads(answer.content)["results"]
    assert set(odd.values()) <= {r["sku"] for r in results}
    request = RequestFactory().get("/api/search", HTTP_HOST="shop.example:8080")
    for r in results:
        expected = reference_hit(request, Product.objects.get(sku=r["sku"]))
        assert {name: r[name] for name in expected} == expected
        if r["matched_photo"] is not None:
            assert r["matched_photo"] in expected["photos"]
    assert any(len(r["photos"]) == 4 for r in results)
    assert any(r["url"].startswith(f"http://shop.example:8080{script_name}/p/") for r in results)


def test_a_photo_search_names_the_photo_that_placed_each_hit(photo_shop):
    # attach_photos finds the matched photo among the photos loaded with the products
    dots = Image.open(photo_shop / "images" / "dots.png").convert("RGB")
    with CaptureQueriesContext(connection) as queries:
        top = search(image=dots, k=5).hits[0]
    # no second query for them: the products' own query reads them
    photo_queries = [q["sql"] for q in queries if "catalog_productphoto" in q["sql"]]
    assert len(photo_queries) == 1 and "jsonb_agg" in photo_queries[0]
    assert top.product.sku == "B-01" and top.photo is not None and top.photo.position == 2
    assert top.photo.image.name == Product.objects.get(sku="B-01").photos.get(position=2).image.name
