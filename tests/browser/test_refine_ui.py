"""Issue #11, item 4 in a real browser: "less like this" and "more like this" on result cards
refine the search, shown as removable chips; words to avoid typed in the box. Screenshots go
to test-output/screenshots/."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_search_ui import shot

pytestmark = pytest.mark.browser


def result_skus(page) -> list[str]:
    return [
        href.split("/p/")[1].split("/")[0]
        for href in page.locator("#results .card .card-link").evaluate_all(
            "(links) => links.map((a) => a.getAttribute('href'))"
        )
    ]


def test_less_like_this_more_like_this_and_words_to_avoid(shop, page):
    page.goto(shop + "/?q=bag&mode=hybrid")
    before = result_skus(page)
    first = page.locator("#results .card").first
    title = first.locator(".title").inner_text()
    first.get_by_role("link", name="Less like this").click()
    page.wait_for_url(re.compile(r".*unlike=" + re.escape(before[0])))
    after = result_skus(page)
    assert before[0] not in after and after != before[1:]
    chip = page.locator("#example-chips .example-unlike")
    assert chip.is_visible() and title in chip.inner_text() and "Less like" in chip.inner_text()
    # "why here" shows what the product to see less of took away
    score = page.locator("#results .card .score").first
    score.hover()
    negative = score.locator(".why-share.negative")
    assert negative.count() >= 1 and negative.first.inner_text().startswith("\u2212")
    assert "Less like the examples" in score.locator(".why").inner_text()
    page.screenshot(path=SCREENSHOTS / "less-like-this-1280.png")
    page.mouse.move(0, 0)

    # typing more words keeps the examples (they ride along as hidden fields)
    page.locator("#q").fill("")
    page.locator("#q").press_sequentially("dark bag", delay=30)
    page.wait_for_function("location.search.includes('q=dark+bag')")
    assert "unlike=" in page.url and page.locator("#example-chips .example-unlike").is_visible()

    # more like this on another card: a second chip; removing the first keeps the second
    second = page.locator("#results .card").nth(1)
    liked = result_skus(page)[1]
    second.get_by_role("link", name="More like this").click()
    page.wait_for_url(re.compile(r".*like=" + re.escape(liked)))
    assert page.locator("#example-chips .example-chip").count() == 2
    assert liked not in result_skus(page)
    shot(page, "more-and-less-like-1280.png")
    page.locator("#example-chips .example-unlike .chip-remove").click()
    page.wait_for_url(lambda url: "unlike=" not in url)
    assert page.locator("#example-chips .example-chip").count() == 1
    assert page.locator("#example-chips .example-like").is_visible()

    # words to avoid, typed: "trousers, not dark"
    def dark_titles() -> int:
        titles = page.locator("#results .card .title").all_inner_texts()[:6]
        return sum("dark" in t.lower() or "deep" in t.lower() for t in titles)

    page.goto(shop + "/?q=trousers")
    plain = dark_titles()
    page.goto(shop + "/?q=" + "trousers, not dark".replace(" ", "+").replace(",", "%2C"))
    avoid = page.locator("#example-chips .example-avoid")
    assert "Not" in avoid.inner_text() and "dark" in avoid.inner_text() and "from your words" in avoid.inner_text()
    assert dark_titles() < plain
    shot(page, "words-to-avoid-1280.png")


def test_the_slider_weighs_words_against_the_photo(shop, page):
    """Issue #11, item 5: in a photo + words search the shopper sets how much the words count."""
    from tests.conftest import SMALL_CSV

    page.goto(shop + "/")
    page.locator("#image").set_input_files(str(SMALL_CSV.parent / "images" / "SM-037.png"))  # a pale bag
    page.wait_for_url(re.compile(r".*img=[\w-]+"))
    slider = page.locator("#text_weight")
    assert slider.is_visible() and slider.is_disabled()  # no words yet: nothing to weigh
    photo_order = result_skus(page)
    page.get_by_label("Smart").check()
    page.locator("#q").press_sequentially("dark", delay=30)
    page.wait_for_function("document.getElementById('live').textContent.includes('your photo + “dark”')")
    assert slider.is_enabled()

    def dark_on_top() -> int:
        return sum("dark" in t.lower() for t in page.locator("#results .card .title").all_inner_texts()[:8])

    slider.fill("0")
    page.wait_for_function("location.search.includes('text_weight=0') && !location.search.includes('text_weight=0.')")
    assert page.locator("#text-weight-value").inner_text() == "0%"
    assert result_skus(page)[:8] == photo_order[:8]  # the words count for nothing
    photo_heavy = dark_on_top()
    slider.fill("1")
    page.wait_for_function("location.search.includes('text_weight=1')")
    assert page.locator("#text-weight-value").inner_text() == "100%"
    assert slider.get_attribute("aria-valuetext") == "words 100%, photo 0%"
    assert dark_on_top() > photo_heavy
    page.reload()  # the URL holds the weight
    assert page.locator("#text_weight").input_value() == "1"
    shot(page, "text-weight-1280.png")
