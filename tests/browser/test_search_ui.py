"""Issue #3 and #5 in a real browser: type and see results, filter, page, upload a photo,
open a product and follow "more like this". Screenshots go to test-output/screenshots/."""
from __future__ import annotations

import re

import pytest

from tests.browser.conftest import SCREENSHOTS
from tests.conftest import SMALL_CSV

pytestmark = pytest.mark.browser


def shot(page, name: str) -> None:
    """A full-page screenshot once every (lazy) photo has loaded."""
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_function("[...document.images].every((i) => i.complete)")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=SCREENSHOTS / name, full_page=True)


def card_categories(page) -> list[str]:
    return page.locator("#results .card .category").all_inner_texts()


def test_type_filter_and_page(shop, page):
    page.goto(shop + "/")
    shot(page, "landing-1280.png")
    assert page.locator(".tile").count() == 4

    # search-as-you-type: no Enter, no submit; the results and the URL follow the typing
    page.locator("#q").press_sequentially("dark trousers", delay=40)
    page.wait_for_function("document.querySelectorAll('#results .card').length > 0")
    page.wait_for_function("location.search.includes('q=dark+trousers')")
    assert card_categories(page)[:3] == ["Trousers"] * 3
    live = page.locator("#live")
    assert re.search(r"1–24 of 40 results for “dark trousers”", live.inner_text())
    assert page.locator("#results .card .score").first.inner_text().startswith("match ")
    shot(page, "search-1280.png")

    # page 2, then reload: the URL holds the whole search
    page.locator(".pagination a", has_text="2").click()
    page.wait_for_function("document.getElementById('live').textContent.startsWith('25–40')")
    assert "page=2" in page.url
    page.reload()
    assert page.locator("#results .card").count() == 16
    assert page.locator("#q").input_value() == "dark trousers"

    # filter by category: applies at once and starts again at page 1
    page.get_by_label("Bags").check()
    page.wait_for_function("document.getElementById('live').textContent.includes('in Bags')")
    assert set(card_categories(page)) == {"Bags"}
    assert "category=Bags" in page.url and "page=2" not in page.url
    shot(page, "filtered-1280.png")

    # price range and sort
    page.locator("#max_price").fill("60")
    page.locator("#sort").select_option("price_asc")
    page.wait_for_function("location.search.includes('sort=price_asc') && location.search.includes('max_price=60')")
    prices = [float(p.strip("$")) for p in page.locator("#results .card .price").all_inner_texts()]
    assert prices == sorted(prices) and all(p <= 60 for p in prices)

    # no results: a visible message
    page.locator("#q").fill("zzyzx")
    page.get_by_label("Exact words").check()
    page.wait_for_selector(".message.empty")
    assert "No products match" in page.locator(".message.empty").inner_text()

    # keyboard: Tab from the search box reaches the photo button, the submit button, the filters
    page.locator("#q").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "image"


def test_photo_search_product_page_and_phone(shop, page, browser):
    photo = SMALL_CSV.parent / "images" / "SM-016.png"
    page.goto(shop + "/")
    page.locator("#image").set_input_files(str(photo))  # the file picker
    page.wait_for_url(re.compile(r".*img=[\w-]+"))
    assert "for your photo" in page.locator("#live").inner_text()
    first = page.locator("#results .card a").first
    assert "/p/SM-016/" in first.get_attribute("href")
    assert page.locator(".photo-chip img").is_visible()
    shot(page, "photo-search-1280.png")

    # photo + words: a composed query, pageable like any other
    page.locator("#q").press_sequentially("light", delay=30)
    page.wait_for_function("document.getElementById('live').textContent.includes('your photo + “light”')")
    assert "img=" in page.url and "q=light" in page.url

    # open a product, then follow "more like this"
    first = page.locator("#results .card a").first
    first.click()
    page.wait_for_url(re.compile(r".*/p/SM-\d+/.*"))
    assert page.locator("#similar-image .card").count() == 8
    assert page.locator("#similar-text .card").count() == 8
    shot(page, "product-1280.png")
    title = page.locator("h1").inner_text()
    page.locator("#similar-image .card a").first.click()
    page.wait_for_function(f"document.querySelector('h1').textContent !== {title!r}")
    assert page.locator("#similar-image .card").count() == 8

    # a phone: the same pages at 390 px, no horizontal scrolling
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    mobile = phone.new_page()
    mobile.goto(shop + "/?q=dark&k=8")
    assert mobile.evaluate("document.documentElement.scrollWidth") <= 390
    assert mobile.locator("#results .card").count() == 8
    shot(mobile, "search-390.png")
    mobile.goto(shop + "/p/SM-001/")
    assert mobile.evaluate("document.documentElement.scrollWidth") <= 390
    shot(mobile, "product-390.png")
    phone.close()
