"""Issue #11, item 3 in a real browser: a photo search finds a product by its third photo,
the result card shows that photo and says which it is, and the product page opens its
gallery at it. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import re
import shutil

import pytest
from PIL import Image, ImageOps

from tests.browser.test_search_ui import shot
from tests.catalog.test_photos import import_csv, pattern, save_png, write_csv
from tests.conftest import SMALL_CSV

pytestmark = pytest.mark.browser


@pytest.fixture
def photo_shop(shop, tmp_path, django_capture_on_commit_callbacks):
    """The fixture catalogue plus a tote with three photos: its own, mirrored, and a stripe detail."""
    folder = tmp_path / "photos"
    shutil.copytree(SMALL_CSV.parent / "images", folder / "images")
    save_png(ImageOps.mirror(Image.open(folder / "images" / "SM-010.png")), folder / "images" / "tote-back.png")
    save_png(pattern("stripes"), folder / "images" / "tote-stripes.png")
    rows = [
        [
            "PH-1",
            "Canvas tote with striped lining",
            "Three photos: front, back, lining.",
            "Bags",
            "45",
            "images/SM-010.png",
            "images/tote-back.png|images/tote-stripes.png",
        ]
    ]
    job = import_csv(write_csv(folder, rows), django_capture_on_commit_callbacks)
    assert job.created == 1, job.errors
    return shop, folder / "images" / "tote-stripes.png"


def test_a_result_shows_the_photo_that_matched_and_the_gallery_opens_at_it(photo_shop, page):
    shop, stripes = photo_shop
    page.goto(shop + "/")
    page.locator("#image").set_input_files(str(stripes))
    page.wait_for_url(re.compile(r".*img=[\w-]+"))
    card = page.locator("#results .card").first
    assert card.locator(".title").inner_text() == "Canvas tote with striped lining"
    badge = card.locator(".matched-photo")
    assert badge.inner_text() == "photo 3/3"
    assert badge.get_attribute("title") == "Matched on photo 3 of 3"
    # the card shows the lining photo, not the tote's main photo
    src = card.locator(".card-photo img").get_attribute("src")
    assert src.startswith("/media/thumbs/") and src == page.evaluate(
        "fetch('/api/search?k=1&img=' + new URLSearchParams(location.search).get('img'))"
        ".then(r => r.json()).then(b => new URL(b.results[0].matched_photo.thumbnail_url).pathname)"
    )
    # other results matched on their only photo: no badge
    assert page.locator("#results .card .matched-photo").count() == 1
    shot(page, "photos-result-1280.png")

    card.locator("a.card-link").click()
    page.wait_for_url(re.compile(r".*/p/PH-1/\?.*photo=2"))
    thumbs = page.locator(".gallery .gallery-thumb")
    assert thumbs.count() == 3
    assert thumbs.nth(2).get_attribute("aria-current") == "true"
    big = page.locator(".product-photo")
    assert big.get_attribute("alt") == "Canvas tote with striped lining, photo 3 of 3"
    assert page.locator(".breadcrumbs a", has_text="Back to results").is_visible()
    shot(page, "photos-gallery-1280.png")

    # another photo of the gallery, and back to results still works
    thumbs.nth(1).click()
    page.wait_for_function("document.querySelector('.product-photo').alt.endsWith('photo 2 of 3')")
    assert page.locator(".gallery-thumb[aria-current=true]").get_attribute("data-position") == "1"
    page.locator(".breadcrumbs a", has_text="Back to results").click()
    page.wait_for_url(re.compile(r".*img=[\w-]+"))
    assert page.locator("#results .card .matched-photo").first.inner_text() == "photo 3/3"
