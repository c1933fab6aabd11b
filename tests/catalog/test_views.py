"""The HTML pages: search with filters and paging in the URL, photo searches, product pages."""

from __future__ import annotations

import io
import re

from catalog.models import QueryImage
from tests.catalog.test_search import catalogue, product_image  # noqa: F401  (module fixture)


def cards(html: str) -> list[str]:
    return re.findall(r'href="/p/([^/"]+)/', html.split('id="results"', 1)[-1].split("</ol>", 1)[0])


def test_landing_page_shows_categories(catalogue, db, client):
    html = client.get("/").content.decode()
    assert "Shop by category" in html
    assert html.count('class="tile"') == 4
    assert 'aria-live="polite"' in html and 'for="q"' in html


def test_text_search_with_filters_sort_and_pages(catalogue, db, client):
    response = client.get("/", {"q": "dark", "category": "Trousers", "sort": "price_asc", "k": 4})
    html = response.content.decode()
    assert response.status_code == 200
    skus = cards(html)
    assert len(skus) == 4
    assert "1–4 of" in html and "for “dark”" in html
    # page links keep the whole query
    assert 'href="/?q=dark&amp;category=Trousers&amp;sort=price_asc&amp;page=2&amp;k=4"' in html
    page2 = client.get("/", {"q": "dark", "category": "Trousers", "sort": "price_asc", "k": 4, "page": 2})
    assert set(cards(page2.content.decode())).isdisjoint(skus)


def test_fragment_is_just_the_results(catalogue, db, client):
    html = client.get("/", {"q": "bag", "fragment": 1}).content.decode()
    assert "<html" not in html and 'id="results"' in html and 'data-status="1–24 of' in html


def test_no_results_and_bad_input_are_explained(catalogue, db, client):
    empty = client.get("/", {"q": "zzyzx", "mode": "keyword"}).content.decode()
    assert "No products match" in empty
    bad = client.get("/", {"q": "bag", "min_price": "9", "max_price": "1"})
    assert bad.status_code == 400 and "min_price (9) is above max_price (1)" in bad.content.decode()


def test_browse_a_category_without_words(catalogue, db, client):
    html = client.get("/", {"category": "Bags"}).content.decode()
    assert len(cards(html)) == 10 and "10 products" in html


def test_photo_upload_redirects_to_a_shareable_url(catalogue, db, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    out = io.BytesIO()
    product_image("SM-010", catalogue).save(out, "PNG")
    photo = SimpleUploadedFile("bag.png", out.getvalue(), content_type="image/png")
    response = client.post("/", {"image": photo, "q": "dark", "category": "Bags"})
    assert response.status_code == 302
    key = QueryImage.objects.get().key
    assert response["Location"] == f"/?q=dark&img={key}&category=Bags"
    html = client.get(response["Location"]).content.decode()
    assert f'src="/q/{key}.jpg"' in html and "your photo + “dark”" in html
    assert client.get(f"/q/{key}.jpg")["Content-Type"] == "image/jpeg"
    photo_only = client.get("/", {"img": key}).content.decode()
    assert cards(photo_only)[0] == "SM-010"
    assert client.get("/", {"img": "expired123"}).status_code == 400


def test_a_bad_photo_is_explained(catalogue, db, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post("/", {"image": SimpleUploadedFile("x.png", b"nope", content_type="image/png")})
    assert response.status_code == 400 and "We could not use that photo" in response.content.decode()


def test_product_page_has_neighbours(catalogue, db, client):
    html = client.get("/p/SM-001/", {"back": "/?q=shoes"}).content.decode()
    assert "Casual pair of sneakers" in html and 'href="/?q=shoes"' in html
    for section in ("similar-image", "similar-text"):
        block = html.split(f'id="{section}"', 1)[1].split("</ol>", 1)[0]
        assert len(re.findall(r'class="card"', block)) == 8
        assert "/p/SM-001/" not in block
    assert 'href="/?category=Sneakers"' in html
    assert client.get("/p/SM-001/", {"back": "https://evil.example/"}).content.decode().count("evil") == 0


def facet_block(html: str, facet: str) -> str:
    # the filter panel's copy (the fragment's <template> copy comes later in the page)
    return html.split(f'id="{facet}"', 1)[1].split("</fieldset>" if facet == "category-facet" else "</ul>", 1)[0]


def test_facets_count_the_search_and_disable_empty_choices(catalogue, db, client):
    html = client.get("/", {"q": "trousers", "mode": "keyword", "max_price": "60"}).content.decode()
    block = facet_block(html, "category-facet")
    assert "Counts of every product matching the words" in block
    pool = client.get("/", {"q": "trousers", "mode": "semantic", "max_price": "30"}).content.decode()
    assert "Counts of the best 40 matches" in pool  # the pool, not what the price filter leaves of it
    assert re.search(r'value="Trousers"> Trousers <span class="count">5</span>', block)
    assert re.search(
        r'<label class="choice disabled"><input type="radio" name="category" value="Bags" disabled> '
        r'Bags <span class="count">0</span>',
        block,
    )
    bars = facet_block(html, "price-facet")
    # the histogram ignores the price filter: all 10 trousers, in links that set both ends
    assert sum(int(n) for n in re.findall(r'<span class="n" aria-hidden="true">(\d+)</span>', bars)) == 10
    first = re.search(r'<a href="([^"]+)" class="bar" data-min="([\d.]+)" data-max="([\d.]+)"', bars)
    assert first and f"min_price={first[2].rstrip('0').rstrip('.')}" in first[1].replace("&amp;", "&")
    # a fragment carries the counts for the filter panel
    fragment = client.get("/", {"q": "trousers", "mode": "keyword", "fragment": 1}).content.decode()
    assert '<template id="facets-next"><fieldset id="category-facet"' in fragment


def test_a_chosen_price_bar_clears_itself(catalogue, db, client):
    html = client.get("/", {"q": "bag", "mode": "keyword"}).content.decode()
    low, high = re.search(r'class="bar" data-min="([\d.]+)" data-max="([\d.]+)"', html).groups()
    chosen = client.get("/", {"q": "bag", "mode": "keyword", "min_price": low, "max_price": high}).content.decode()
    bar = re.search(r'<a href="([^"]+)" class="bar selected"', chosen)
    assert bar and "price" not in bar[1]


def test_misspelt_words_show_what_was_searched(catalogue, db, client):
    html = client.get("/", {"q": "trowsers", "mode": "hybrid", "k": 4}).content.decode()
    assert "Showing results for <strong>trousers</strong>" in html
    assert 'href="/?q=trowsers&amp;mode=hybrid&amp;k=4&amp;correct=0"' in html
    assert len(cards(html)) == 4
    # searching for what was typed: no correction, and its pages keep it that way
    html = client.get("/", {"q": "trowsers", "mode": "keyword", "correct": "0"}).content.decode()
    assert "Showing results for" not in html and "No products match" in html
    assert 'name="correct" value="0"' in html
    assert client.get("/", {"q": "trowsers", "correct": "maybe"}).status_code == 400
