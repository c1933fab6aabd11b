"""Stored query photos stay bounded: expired ones go, then the oldest beyond a count and a size."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from catalog.models import QueryImage
from catalog.query_image import prune_query_images


def stored(key: str, size: int, age_minutes: float) -> QueryImage:
    photo = QueryImage.objects.create(key=key, photo=b"\xff" * size, width=10, height=10)
    QueryImage.objects.filter(key=key).update(created_at=timezone.now() - timedelta(minutes=age_minutes))
    return photo


def keys() -> set[str]:
    return set(QueryImage.objects.values_list("key", flat=True))


def test_expired_photos_go_first(db, settings):
    settings.SEARCH_QUERY_IMAGE_TTL_HOURS = 1
    stored("old", 100, age_minutes=61)
    stored("fresh", 100, age_minutes=59)
    assert prune_query_images() == 1
    assert keys() == {"fresh"}


def test_the_oldest_go_beyond_the_count(db, settings):
    settings.SEARCH_QUERY_IMAGE_MAX_COUNT = 3
    for n in range(5):
        stored(f"p{n}", 100, age_minutes=10 - n)  # p0 oldest, p4 newest
    # room for one more: the two newest stay
    assert prune_query_images(incoming_bytes=100) == 3
    assert keys() == {"p3", "p4"}


def test_the_oldest_go_beyond_the_bytes(db, settings):
    settings.SEARCH_QUERY_IMAGE_MAX_BYTES = 1000
    for n, size in enumerate([400, 300, 200, 100]):  # p0 oldest
        stored(f"p{n}", size, age_minutes=10 - n)
    # the newest three hold 600 bytes; a 400-byte newcomer leaves room for 600
    prune_query_images(incoming_bytes=400)
    assert keys() == {"p1", "p2", "p3"}
    prune_query_images(incoming_bytes=401)
    assert keys() == {"p2", "p3"}


def test_nothing_goes_while_within_bounds(db, settings):
    settings.SEARCH_QUERY_IMAGE_MAX_COUNT = 3
    settings.SEARCH_QUERY_IMAGE_MAX_BYTES = 1000
    stored("a", 300, age_minutes=2)
    stored("b", 300, age_minutes=1)
    assert prune_query_images(incoming_bytes=400) == 0
    assert keys() == {"a", "b"}


def test_photo_searches_keep_the_store_bounded(db, client, settings, small_catalogue):
    from tests.conftest import png_bytes
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.SEARCH_QUERY_IMAGE_MAX_COUNT = 3
    answers = []
    for n in range(5):
        upload = SimpleUploadedFile(f"p{n}.png", png_bytes((40 * n, 80, 120)), content_type="image/png")
        response = client.post("/api/search/image", {"image": upload, "k": 2})
        assert response.status_code == 200, response.content
        answers.append(response.json()["query"]["image_id"])
    assert keys() == set(answers[-3:])
    # the newest still pages; the oldest has been pruned and says so
    assert client.get("/api/search", {"img": answers[-1]}).status_code == 200
    gone = client.get("/api/search", {"img": answers[0]})
    assert gone.status_code == 404 and "expired" in gone.json()["error"]
