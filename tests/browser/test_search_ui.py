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


def category_count(page, name: str) -> tuple[str, bool]:
    label = page.locator("#category-facet label").filter(has=page.locator(f'input[value="{name}"]'))
    return label.locator(".count").inner_text(), label.locator("input").is_disabled()


def test_facets_follow_the_search_and_the_filters(shop, page):
    """Issue #11, item 1: counts of the search's matches; a choice that would empty the page is disabled."""
    page.goto(shop + "/?mode=keyword")
    page.locator("#q").press_sequentially("trousers", delay=30)
    page.wait_for_function("document.getElementById('live').textContent.includes('“trousers”')")
    assert category_count(page, "Trousers") == ("10", False)
    assert category_count(page, "Bags") == ("0", True)
    assert "every product matching the words" in page.locator(".facet-basis").inner_text()
    bars = page.locator("#price-facet .histogram li")
    assert bars.count() >= 3
    assert sum(int(n) for n in page.locator("#price-facet .histogram .n").all_inner_texts()) == 10

    # a price bar sets the range; the category counts follow, the histogram keeps its bars
    first = page.locator("#price-facet a.bar").first
    low, high = first.get_attribute("data-min"), first.get_attribute("data-max")
    expected = first.locator(".n").inner_text()
    first.click()
    page.wait_for_function(f"location.search.includes('min_price={low.rstrip('0').rstrip('.')}')")
    page.wait_for_function(
        f"document.querySelector('#category-facet input[value=\"Trousers\"]').closest('label')"
        f".querySelector('.count').textContent === '{expected}'"
    )
    assert page.locator("#min_price").input_value() == low and page.locator("#max_price").input_value() == high
    assert page.locator("#price-facet a.bar.selected").count() == 1
    prices = [float(p.strip("$")) for p in page.locator("#results .card .price").all_inner_texts()]
    assert len(prices) == int(expected) and all(float(low) <= p <= float(high) for p in prices)
    shot(page, "facets-1280.png")

    # the chosen bar again clears the range
    page.locator("#price-facet a.bar.selected").click()
    page.wait_for_function("!location.search.includes('min_price')")
    assert category_count(page, "Trousers") == ("10", False)

    # hybrid: the counts are of the candidate pool
    page.get_by_label("Smart").check()
    page.wait_for_function("document.querySelector('.facet-basis').textContent.includes('best')")
    assert int(category_count(page, "Trousers")[0]) >= 10


def test_typos_are_corrected_and_suggestions_appear(shop, page):
    """Issue #11, item 2: "trowsers" finds trousers, with a "showing results for" line and a way
    back; autocomplete under the search box, by mouse or keyboard."""
    page.goto(shop + "/?mode=hybrid")
    page.locator("#q").press_sequentially("trowsers", delay=30)
    page.wait_for_selector("#correction")
    assert page.locator("#correction").inner_text().startswith("Showing results for trousers.")
    assert "results for “trousers”" in page.locator("#live").inner_text()  # what screen readers hear
    assert set(card_categories(page)[:5]) == {"Trousers"}
    shot(page, "typo-1280.png")

    # search instead for what was typed: keyword mode then finds nothing
    page.get_by_label("Exact words").check()
    page.wait_for_function("location.search.includes('mode=keyword')")
    page.locator("#correction a").click()
    page.wait_for_selector(".message.empty")
    assert "correct=0" in page.url and page.locator("#correction").count() == 0

    # autocomplete: categories first, then titles; arrow keys and Enter choose
    page.locator("#q").fill("")
    page.locator("#q").press_sequentially("snea", delay=60)
    page.wait_for_selector("#suggestions li")
    options = page.locator("#suggestions li")
    assert options.first.inner_text().startswith("Sneakers")
    assert page.locator("#q").get_attribute("aria-expanded") == "true"
    assert all("sneakers" in t.lower() for t in options.all_inner_texts())
    shot(page, "suggest-1280.png")
    page.keyboard.press("ArrowDown")
    assert options.first.get_attribute("aria-selected") == "true"
    page.keyboard.press("Enter")
    page.wait_for_function("location.search.includes('category=Sneakers')")
    assert page.locator("#suggestions").is_hidden()
    assert set(card_categories(page)) == {"Sneakers"}

    # a title suggestion opens the product
    page.locator("#q").press_sequentially("wren mid", delay=60)
    page.wait_for_selector("#suggestions li[data-kind=product]")
    page.locator("#suggestions li[data-kind=product]").first.click()
    page.wait_for_url(re.compile(r".*/p/SM-023/"))


def test_a_word_the_shop_never_uses_finds_its_words(shop, page):
    """Synonyms (catalog/synonyms.py): the fixture sells "trousers"; "pants" in exact-words mode
    finds them, with no "showing results for" line (a synonym is not a typo)."""
    page.goto(shop + "/?mode=keyword")
    page.locator("#q").press_sequentially("dark pants", delay=30)
    # Results follow the typing: wait for the whole words' results, not "dark"'s.
    page.wait_for_function("document.getElementById('live').textContent.includes('results for “dark pants”')")
    assert set(card_categories(page)[:5]) == {"Trousers"}
    assert page.locator("#correction").count() == 0
    shot(page, "synonyms-1280.png")


def test_hovering_a_score_explains_it(shop, page):
    """Issue #11, item 8: which ranked lists placed a result, with what weight, on hover."""
    page.goto(shop + "/?q=dark+trousers&mode=hybrid")
    score = page.locator("#results .card .score").first
    why = score.locator(".why")
    assert why.is_hidden()
    score.hover()
    assert why.is_visible()
    rows = why.locator(".why-row").all_inner_texts()
    assert len(rows) == 2 and {r.split("\n")[0].split("\t")[0] for r in rows} <= {"Keywords", "Words (MiniLM)"}
    shares = [float(s.lstrip("+")) for s in why.locator(".why-share").all_inner_texts()]
    assert sum(shares) == pytest.approx(float(score.inner_text().split()[1]), abs=0.003)
    page.screenshot(path=SCREENSHOTS / "explain-1280.png")
    # the keyboard reaches it too
    page.mouse.move(0, 0)
    page.locator("#results .card .score").nth(1).focus()
    assert page.locator("#results .card .score").nth(1).locator(".why").is_visible()


def test_popular_past_searches_are_suggested_and_clicks_can_rank(shop, page, browser, settings):
    """Issue #11, items 2, 6 and 8: a query three shoppers searched is offered to the next one
    under the search box, labelled as a popular search; with the popularity boost on, a
    result shoppers opened is explained by its clicks."""
    from catalog.models import PopularQuery, SearchClick
    from catalog.popularity import refresh

    # three visitors, one search each, told apart by their addresses (behind one trusted proxy)
    settings.TRUSTED_PROXY_COUNT = 1
    for shopper, address in (("A", "203.0.113.1"), ("B", "203.0.113.2"), ("C", "203.0.113.3")):
        context = browser.new_context(extra_http_headers={"X-Forwarded-For": address})
        other = context.new_page()
        other.goto(shop + "/?q=wide+trousers&mode=keyword")
        if shopper == "A":  # one of them opens the last result
            card = other.locator("#results .card").last
            opened = card.get_attribute("data-sku")
            card.locator("a").first.click()
            other.wait_for_url(re.compile(r".*/p/"))
        context.close()
    for _ in range(50):
        if SearchClick.objects.exists():
            break
        page.wait_for_timeout(100)
    refresh()  # Celery beat does this every POPULARITY_REFRESH_MINUTES
    assert list(PopularQuery.objects.values_list("text", flat=True)) == ["wide trousers"]

    page.goto(shop + "/?mode=keyword")
    page.locator("#q").press_sequentially("wid", delay=60)
    page.wait_for_selector("#suggestions li")
    first = page.locator("#suggestions li").first
    assert first.get_attribute("data-kind") == "query"
    assert first.locator("span").all_inner_texts() == ["wide trousers", "POPULAR SEARCH"]  # CSS upper-cases it
    shot(page, "suggest-popular-1280.png")
    first.click()
    page.wait_for_function("location.search.includes('q=wide+trousers')")
    assert page.locator("#q").input_value() == "wide trousers"
    plain = page.locator("#results .card").first.get_attribute("data-sku")
    assert plain != opened

    # the boost on: the opened result comes first, and its explanation names its clicks
    settings.SEARCH_POPULARITY_WEIGHT = 1.0
    page.goto(shop + "/?q=wide+trousers&mode=keyword")
    card = page.locator("#results .card").first
    assert card.get_attribute("data-sku") == opened
    card.locator(".score").hover()
    rows = card.locator(".why .why-row").all_inner_texts()
    assert any(r.startswith("Popularity (clicks)") and "#1" in r for r in rows), rows
    page.screenshot(path=SCREENSHOTS / "explain-popularity-1280.png")
    second = page.locator("#results .card").nth(1)
    second.locator(".score").hover()
    assert any("no clicks" in r for r in second.locator(".why .why-row").all_inner_texts())
