"""The JSON API contract: shape, rank order, parameters, and errors that name the problem."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from django.conf import settings
from PIL import Image

from catalog.models import Product, QueryImage
from tests.catalog.test_search import catalogue, product_image  # noqa: F401  (module fixture)
from tests.conftest import png_bytes

SHAPE = {"sku", "title", "category", "price", "score", "image_url", "thumbnail_url"}


def upload(data: bytes, name: str = "photo.png", content_type: str = "image/png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type=content_type)


def jpeg_of(image: Image.Image, **save) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92, **save)
    return out.getvalue()


def test_text_search_answers_the_contract_in_rank_order(catalogue, db, client):
    response = client.get("/api/search", {"q": "dark trousers", "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == "dark trousers"
    assert isinstance(body["took_ms"], float)
    assert len(body["results"]) == 5
    for result in body["results"]:
        assert SHAPE <= set(result)
        assert result["image_url"].startswith("http://testserver/media/")
        assert set(result["sources"]) <= {"text_photo", "text_joint", "text_minilm", "keyword"}
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert body["mode"] == settings.SEARCH_DEFAULT_MODE and body["page"] == 1 and body["has_next"] is True
    assert body["total_candidates"] == 40


def test_all_parameters_apply(catalogue, db, client):
    params = {
        "q": "dark",
        "k": 3,
        "mode": "semantic",
        "category": "Sneakers",
        "min_price": "50",
        "max_price": "120",
        "sort": "price_desc",
        "page": 2,
    }
    body = client.get("/api/search", params).json()
    assert body["mode"] == "semantic" and body["sort"] == "price_desc" and body["page"] == 2
    prices = [r["price"] for r in body["results"]]
    assert prices == sorted(prices, reverse=True)
    assert all(r["category"] == "Sneakers" and 50 <= r["price"] <= 120 for r in body["results"])
    expected = sorted(
        Product.objects.filter(category="Sneakers", price__gte=50, price__lte=120).values_list("price", flat=True),
        reverse=True,
    )
    assert prices == [float(p) for p in expected[3:6]]


def test_min_score_and_keyword_mode(catalogue, db, client):
    body = client.get("/api/search", {"q": "bag", "mode": "keyword", "k": 40}).json()
    assert body["results"] and all(r["category"] == "Bags" for r in body["results"])
    assert client.get("/api/search", {"q": "bag", "min_score": "0.99", "mode": "semantic"}).json()["results"] == []


@pytest.mark.parametrize(
    "params, needle",
    [
        ({}, "q is required"),
        ({"q": "  "}, "q is required"),
        ({"q": "x" * 501}, "q is longer"),
        ({"q": "bag", "k": "0"}, "k must be from 1 to 100"),
        ({"q": "bag", "k": "abc"}, "k must be a whole number"),
        ({"q": "bag", "k": "1000"}, "k must be from 1 to 100"),
        ({"q": "bag", "mode": "fuzzy"}, "unknown mode fuzzy"),
        ({"q": "bag", "min_price": "abc"}, "min_price must be a number"),
        ({"q": "bag", "max_price": "NaN"}, "max_price must be a number"),
        ({"q": "bag", "min_price": "50", "max_price": "10"}, "min_price (50) is above max_price (10)"),
        ({"q": "bag", "page": "0"}, "page must be at least 1"),
        ({"q": "bag", "sort": "cheap"}, "unknown sort cheap"),
        ({"q": "bag", "min_score": "x"}, "min_score must be a number"),
        ({"img": "../etc"}, "img must be an id"),
    ],
)
def test_bad_input_is_a_400_naming_the_problem(catalogue, db, client, params, needle):
    response = client.get("/api/search", params)
    assert response.status_code == 400
    assert needle in response.json()["error"]


def test_image_search_answers_the_contract(catalogue, db, client):
    data = jpeg_of(product_image("SM-016", catalogue))
    response = client.post("/api/search/image", {"image": upload(data, "bag.jpg", "image/jpeg"), "k": "4"})
    assert response.status_code == 200
    body = response.json()
    assert body["query"]["image"] == "bag.jpg" and body["query"]["width"] == 28
    assert [r["sku"] for r in body["results"]][0] == "SM-016"
    assert len(body["results"]) == 4 and all(SHAPE <= set(r) for r in body["results"])
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    # the stored photo pages the same search through GET
    image_id = body["query"]["image_id"]
    assert QueryImage.objects.filter(key=image_id).exists()
    page2 = client.get("/api/search", {"img": image_id, "k": 4, "page": 2}).json()
    both = client.get("/api/search", {"img": image_id, "k": 8}).json()
    assert [r["sku"] for r in body["results"] + page2["results"]] == [r["sku"] for r in both["results"]]
    assert client.get("/api/search", {"img": "nosuchid"}).status_code == 404


def test_image_search_with_words_and_filters(catalogue, db, client):
    data = png_bytes_of(product_image("SM-037", catalogue))
    response = client.post("/api/search/image", {"image": upload(data), "q": "dark", "category": "Bags", "k": 5})
    body = response.json()
    assert response.status_code == 200 and body["query"]["q"] == "dark"
    assert all(r["category"] == "Bags" and "image" in r["sources"] for r in body["results"])


def png_bytes_of(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def noise_png() -> bytes:
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return png_bytes_of(Image.fromarray(pixels))


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "files, needle",
    [
        ({}, "multipart field 'image' is required"),
        ({"image": upload(b"hello, not a picture", "notes.txt", "text/plain")}, "not an image"),
        ({"image": upload(noise_png()[:2000], "cut.png")}, "truncated"),
        ({"image": upload(bomb_png(), "bomb.png")}, "too large"),
        ({"image": upload(b"", "empty.png")}, "empty"),
        ({"image": upload(png_bytes()), "k": "0"}, "k must be from 1 to 100"),
        ({"image": upload(png_bytes()), "mode": "nope"}, "unknown mode"),
    ],
)
def test_bad_uploads_are_a_400(catalogue, db, client, files, needle):
    response = client.post("/api/search/image", files)
    assert response.status_code == 400
    assert needle in response.json()["error"]


def test_oversized_upload_is_a_413(catalogue, db, client, settings):
    settings.MAX_UPLOAD_BYTES = 1000
    response = client.post("/api/search/image", {"image": upload(b"\x89PNG" + b"\0" * 5000)})
    assert response.status_code == 413
    # a body over the limit is refused before it is read
    settings.MAX_UPLOAD_BYTES = 10
    big = client.post("/api/search/image", {"image": upload(b"\0" * 200_000)})
    assert big.status_code == 413 and "bytes" in big.json()["error"]


def test_exif_rotation_is_honoured(catalogue, db, client):
    upright = product_image("SM-014", catalogue).resize((56, 84))  # a tall bag photo
    # Stored sideways with EXIF orientation 6 ("rotate 90° clockwise to view").
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = jpeg_of(sideways, exif=exif.tobytes())
    body = client.post("/api/search/image", {"image": upload(data, "phone.jpg", "image/jpeg"), "k": 3}).json()
    assert (body["query"]["width"], body["query"]["height"]) == (56, 84)
    assert body["results"][0]["sku"] == "SM-014"


def test_categories_lists_names_and_counts(catalogue, db, client):
    body = client.get("/api/categories").json()
    assert body["categories"] == [
        {"name": "Bags", "count": 10},
        {"name": "Sneakers", "count": 10},
        {"name": "T-shirts & tops", "count": 10},
        {"name": "Trousers", "count": 10},
    ]


def test_openapi_lists_paths_and_parameters(client):
    schema = client.get("/api/openapi.json").json()
    assert {"/api/search", "/api/search/image", "/api/categories"} <= set(schema["paths"])
    names = {p["name"] for p in schema["paths"]["/api/search"]["get"]["parameters"]}
    assert {"q", "k", "mode", "category", "min_price", "max_price", "sort", "page", "min_score", "img"} <= names
    form = schema["paths"]["/api/search/image"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"image", "q", "mode", "category", "min_price", "max_price", "sort", "page", "min_score"} <= set(
        form["properties"]
    )
    assert "sources" in schema["components"]["schemas"]["Result"]["properties"]


def test_each_result_explains_its_score(catalogue, db, client):
    body = client.get("/api/search", {"q": "dark trousers", "mode": "hybrid", "k": 3}).json()
    for result in body["results"]:
        parts = result["explanation"]
        assert {p["signal"] for p in parts} == {"text_minilm", "keyword"}
        assert set(parts[0]) == {"signal", "label", "rank", "score", "weight", "contribution"}
        assert sum(p["contribution"] for p in parts) == pytest.approx(result["score"], abs=1e-5)
    first = body["results"][0]["explanation"]
    assert first[0]["rank"] == 1 and first[0]["contribution"] >= first[1]["contribution"]
