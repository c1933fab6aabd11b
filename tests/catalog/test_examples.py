"""More like this, less like that: example products, example photos and words to avoid in one
query (catalog/examples.py, search.example_rankings), on real Postgres + pgvector and the real
baseline encoder."""

from __future__ import annotations

import numpy as np
import pytest

from catalog.examples import Examples, split_negations
from catalog.hybrid import rrf
from catalog.models import Product
from catalog.search import image_query_vectors, search, similar_products
from embeddings.models import EmbeddingModel
from tests.catalog.test_search import catalogue, product_image, skus  # noqa: F401  (module fixture)


@pytest.mark.parametrize(
    "text, wanted, avoid",
    [
        ("boots, not heeled", "boots", ["heeled"]),
        ("boots not heeled", "boots", ["heeled"]),
        ("boots -heeled", "boots", ["heeled"]),
        ("black boots but not heeled; without laces", "black boots", ["heeled", "laces"]),
        ("t-shirt, no print -red -red", "t-shirt", ["red", "print"]),
        ("trousers", "trousers", []),
        ("not", "not", []),
        ("-heeled", "", ["heeled"]),
    ],
)
def test_negations_are_split_off_the_words(text, wanted, avoid):
    got_wanted, got_avoid = split_negations(text)
    assert got_wanted == wanted
    assert sorted(got_avoid) == sorted(avoid)


def test_a_negative_list_demotes_what_it_ranks_high_and_adds_nothing():
    fused = rrf(
        {"query": [("a", 0.9), ("b", 0.8), ("c", 0.7)], "avoid": [("a", 0.9), ("z", 0.8)]},
        weights={"query": 1.0, "avoid": -1.0},
    )
    assert [f.item for f in fused] == ["b", "c", "a"]  # a dropped to the bottom, z never came in
    assert fused[-1].score == pytest.approx(0.0)
    assert fused[0].sources == {"query": 0.8}


def ranks(result, wanted: set[str]) -> list[int]:
    return [i for i, sku in enumerate(skus(result), start=1) if sku in wanted]


def test_less_like_this_moves_a_product_and_its_near_duplicates_down(catalogue, db):
    base = search(image=product_image("SM-014", catalogue), k=40)
    shown = base.hits[1].product  # a result the shopper wants less of
    twins = {h.product.sku for h in similar_products(shown, k=3)} - {"SM-014"}
    assert twins and twins <= set(skus(base))
    less = search(image=product_image("SM-014", catalogue), k=40, examples=Examples(unlike=(shown.pk,)))
    assert shown.sku not in skus(less)
    before, after = ranks(base, twins), ranks(less, twins)
    assert np.mean(after) > np.mean(before) + 3, (before, after)
    assert skus(less)[0] not in twins and skus(less)[0] in skus(base)[:10]
    # The explanation shows what the negative list took away, and still adds up.
    for hit in less.hits:
        assert sum(c.share for c in hit.explanation) == pytest.approx(hit.score, abs=1e-6)
    twin_hit = next(h for h in less.hits if h.product.sku in twins)
    negative = [c for c in twin_hit.explanation if c.weight < 0]
    assert negative and negative[0].share < 0 and negative[0].label.startswith("Less like the examples")


def test_more_like_this_alone_finds_the_products_neighbours(catalogue, db):
    product = Product.objects.get(sku="SM-010")
    result = search(examples=Examples(like=(product.pk,)), k=8)
    assert product.sku not in skus(result)  # the example itself is left out
    by_image = [h.product.sku for h in similar_products(product, k=3)]
    by_text = [h.product.sku for h in similar_products(product, k=3, by="text")]
    assert skus(result)[0] in by_image[:1] + by_text[:1]
    assert {c.signal for c in result.hits[0].explanation} == {"like:photo_pretrained", "like:text_minilm"}


def test_positive_and_negative_examples_of_every_type_in_one_query(catalogue, db):
    model = EmbeddingModel.active()
    dark_bag = image_query_vectors(model, product_image("SM-016", catalogue))
    light_bag = Product.objects.get(sku="SM-005")
    result = search(
        "bag", mode="hybrid", k=10, examples=Examples(like_photos=(dark_bag,), unlike=(light_bag.pk,), avoid=("light",))
    )
    assert light_bag.sku not in skus(result)
    signals = {c.signal for h in result.hits for c in h.explanation}
    assert {"like:photo_pretrained", "unlike:photo_pretrained", "avoid:keyword", "avoid:text_minilm"} <= signals
    top = [h.product for h in result.hits[:5]]
    assert all(p.category == "Bags" for p in top)
    assert not any("light" in (p.title + p.description).lower() for p in top[:3])


def test_words_to_avoid_demote_in_every_mode(catalogue, db):
    def darkness(result) -> int:
        return sum(
            any(w in (h.product.title + " " + h.product.description).lower() for w in ("dark", "deep"))
            for h in result.hits
        )

    for mode in ("keyword", "semantic", "hybrid"):
        plain = search("trousers", mode=mode, k=6)
        avoided = search("trousers, not dark", mode=mode, k=6)
        assert avoided.query == "trousers" and avoided.examples.avoid == ("dark",)
        assert darkness(avoided) < darkness(plain), mode
        assert all(h.product.category == "Trousers" for h in avoided.hits[:3]), mode


def test_a_name_that_starts_with_a_negation_is_searched_as_typed(catalogue, db):
    # "no smoking", "not equal": nothing would be left to search for, so nothing is avoided.
    Product.objects.filter(sku="SM-005").update(title="No smoking bag")
    result = search("no smoking", mode="keyword", k=5)
    assert result.query == "no smoking" and not result.examples.avoid
    assert result.hits[0].product.sku == "SM-005"
    assert search("bags, no smoking", mode="keyword", k=5).examples.avoid == ("smoking",)  # with words: avoided


def test_examples_are_limited_and_must_want_something(catalogue, db, settings):
    settings.SEARCH_MAX_EXAMPLES = 2
    with pytest.raises(ValueError, match="too many examples: 3"):
        search("bags -light -dark -pale")
    with pytest.raises(ValueError, match="nothing to search for"):
        search("-light")
    with pytest.raises(ValueError, match="nothing to search for"):
        search(examples=Examples(unlike=(Product.objects.first().pk,)))


def test_the_api_takes_examples_of_every_type_and_explains_the_negative(catalogue, db, client):
    from tests.catalog.test_api import upload as file
    from tests.conftest import png_bytes

    upload = client.post("/api/search/image", {"image": file(png_bytes((20, 20, 20)))})
    assert upload.status_code == 200, upload.content
    photo = upload.json()["query"]["image_id"]
    response = client.get(
        "/api/search",
        {
            "q": "bag, not light",
            "mode": "hybrid",
            "like": ["SM-016"],
            "unlike": ["SM-005"],
            "like_img": [photo],
            "avoid": ["pale"],
        },
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["searched"] == "bag"
    assert body["examples"] == {
        "like": ["SM-016"],
        "unlike": ["SM-005"],
        "like_img": [photo],
        "unlike_img": [],
        "avoid": ["pale", "light"],
    }
    found = [r["sku"] for r in body["results"]]
    assert "SM-016" not in found and "SM-005" not in found
    negative = [e for r in body["results"] for e in r["explanation"] if e["weight"] < 0]
    assert negative and min(e["contribution"] for e in negative) < 0
    for r in body["results"]:
        assert sum(e["contribution"] for e in r["explanation"]) == pytest.approx(r["score"], abs=1e-4)
    # More like this alone: the product's neighbours.
    alone = client.get("/api/search", {"like": "SM-010", "k": 3}).json()
    assert [r["sku"] for r in alone["results"]][0] == skus(
        search(examples=Examples(like=(Product.objects.get(sku="SM-010").pk,)), k=1)
    )[0]
    # A photo search with examples answers too.
    composed = client.post(
        "/api/search/image", {"image": file(png_bytes((20, 20, 20))), "unlike": ["SM-016"], "q": "bag"}
    )
    assert composed.status_code == 200 and "SM-016" not in [r["sku"] for r in composed.json()["results"]]
    refused = client.post("/api/search/image", {"image": file(png_bytes()), "like": ["NOPE"]})
    assert refused.status_code == 400 and refused.json()["error"] == "like: no product with sku 'NOPE'"


def test_the_page_refines_by_links_and_shows_removable_chips(catalogue, db, client):
    page = client.get("/", {"q": "bag", "mode": "hybrid"})
    first = page.context["cards"][0]
    assert "unlike=" + first["hit"].product.sku.replace(" ", "+") in first["less_url"]
    refined = client.get(first["less_url"])
    assert refined.status_code == 200
    assert first["hit"].product.sku not in [c["hit"].product.sku for c in refined.context["cards"]]
    chips = refined.context["example_chips"]
    assert [(c["kind"], c["value"]) for c in chips] == [("unlike", first["hit"].product.sku)]
    assert "unlike" not in chips[0]["remove_url"]
    html = refined.content.decode()
    assert f'<input type="hidden" name="unlike" value="{first["hit"].product.sku}">' in html
    assert "Less like</span>" in html and "−" in html  # the chip, and a negative share in "why here"
    typed = client.get("/", {"q": "trousers -dark"})
    assert [(c["kind"], c["value"], c["remove_url"]) for c in typed.context["example_chips"]] == [("avoid", "dark", "")]
    bad = client.get("/", {"q": "bag", "like": "NOPE"})
    assert bad.status_code == 400 and "like: no product with sku" in bad.content.decode()
