"""Typo tolerance and autocomplete (catalog/suggest.py, migration 0006) on real Postgres, the
40-product fixture catalogue and the real baseline encoder."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from catalog.models import Product
from catalog.search import search
from catalog.suggest import correct_query, edit_distance, suggest, typo_budget
from tests.catalog.test_search import catalogue  # noqa: F401  (module fixture)


def test_edit_distance_counts_a_swap_as_one_edit():
    assert edit_distance("snaekers", "sneakers", 2) == 1
    assert edit_distance("trowsers", "trousers", 2) == 1
    assert edit_distance("sneakers", "sneakers", 2) == 0
    assert edit_distance("bag", "bags", 1) == 1
    assert edit_distance("footwear", "footbed", 2) == 3  # past the limit: limit + 1
    assert edit_distance("ab", "abcdef", 2) == 3


def test_typo_budget_grows_with_the_word():
    assert [typo_budget(w) for w in ("top", "bags", "sandals", "sneakers")] == [0, 1, 1, 2]


def test_misspelt_words_are_corrected_to_catalogue_words(catalogue, db):
    assert correct_query("snaekers").corrected == "sneakers"
    assert correct_query("trowsers").corrected == "trousers"
    fixed = correct_query("Dark trowsers")
    assert fixed.corrected == "Dark trousers" and fixed.words == {"trowsers": "trousers"}
    assert correct_query("dark trousers") is None  # nothing to correct
    assert correct_query("sneaker") is None  # known through stemming
    assert correct_query("the of and") is None  # stop words
    assert correct_query("qwxzvbnm") is None  # nothing close


def test_a_swap_in_a_short_word_is_found_among_closer_looking_words(catalogue, db):
    # 60 words sharing three trigrams with "bgas" ("  b", " bg", "bga"), "bags" only one;
    # all of them are two edits away, "bags" one.
    Product.objects.bulk_create(
        [
            Product(
                sku=f"BG-{i}",
                title=f"Bga{a}{b} tote",
                category="Bags",
                price=Decimal("9"),
                image="x.png",
                content_hash="h",
            )
            for i, (a, b) in enumerate((a, b) for a in "xyzwqk" for b in "abcdefghij")
        ]
    )
    assert correct_query("bgas").corrected == "bags"


def test_hyphenated_words_are_in_the_vocabulary(catalogue, db):
    assert correct_query("tshirt").corrected == "t-shirt"  # not "shirt": one edit, more shared trigrams
    assert correct_query("t-shrit").corrected == "t-shirt"  # a hyphen inside a word is no exclusion
    assert correct_query("fulllength trousers").corrected == "full-length trousers"
    assert [h.product.category for h in search("tshirt", mode="keyword", k=3, correct=True).hits] == [
        "T-shirts & tops"
    ] * 3


def test_phrases_exclusions_and_short_words_are_left_as_typed(catalogue, db):
    assert correct_query('"snaekers"') is None
    assert correct_query("bag -snaekers") is None
    assert correct_query("bga") is None  # under 4 letters: no typo allowed


def test_the_vocabulary_follows_the_catalogue(catalogue, db):
    assert correct_query("lofers") is None
    product = Product.objects.create(
        sku="NEW-1", title="Velvet loafers", category="Shoes", price=Decimal("80"), image="x.png", content_hash="h"
    )
    assert correct_query("lofers").corrected == "loafers"  # the insert trigger added the word
    product.description = "Soft suede moccasins"
    product.save()
    assert correct_query("mocasins").corrected == "moccasins"  # and the update trigger
    product.delete()
    # the word stays in the vocabulary, but no product has it: no correction to it
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM catalog_searchword WHERE word = 'loafers'")
        assert cursor.fetchone()[0] == 1
    assert correct_query("lofers") is None


def vocabulary_has(word: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM catalog_searchword WHERE word = %s)", [word])
        return cursor.fetchone()[0]


def test_a_bulk_insert_adds_every_new_word_and_updates_only_changed_text(catalogue, db):
    Product.objects.bulk_create(
        [
            Product(
                sku=f"B-{i}",
                title=f"{word} scarf",
                category="Scarves",
                price=Decimal("20"),
                image="x.png",
                content_hash="h",
            )
            for i, word in enumerate(["cashmere", "mohair", "alpaca"])
        ]
    )
    assert all(vocabulary_has(w) for w in ["cashmere", "mohair", "alpaca", "scarf", "scarves"])
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM catalog_searchword WHERE word = 'mohair'")
    Product.objects.filter(sku="B-1").update(price=Decimal("25"), content_hash="h2")
    assert not vocabulary_has("mohair")  # the text did not change: nothing to add
    Product.objects.filter(sku="B-1").update(title="Mohair scarf, long")
    assert vocabulary_has("mohair")


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
@pytest.mark.parametrize("typed, category", [("snaekers", "Sneakers"), ("trowsers", "Trousers")])
def test_corrected_searches_find_the_products(catalogue, db, mode, typed, category):
    result = search(typed, mode=mode, k=5, correct=True)
    assert result.correction is not None and result.correction.original == typed
    assert result.query == category.lower()
    assert [h.product.category for h in result.hits] == [category] * 5


def test_without_correct_the_words_are_searched_as_typed(catalogue, db):
    result = search("snaekers", mode="keyword", k=5)
    assert result.correction is None and result.query == "snaekers" and result.hits == []
    # semantic mode searches meaning, not spelling: it is never corrected
    assert search("snaekers", mode="semantic", k=5, correct=True).correction is None


def test_suggestions_start_with_categories_then_titles(catalogue, db):
    found = suggest("tro")
    assert found[0].text == "Trousers" and found[0].kind == "category"
    assert found[0].url == "/?category=Trousers"
    titles = [s for s in found if s.kind == "product"]
    assert len(found) == 8 and all("trousers" in s.text.lower() for s in titles)
    # titles that start with the typed text first, then shorter ones
    assert titles[0].text == "Trousers – dark"
    assert titles[0].url == Product.objects.get(title="Trousers – dark").get_absolute_url()


def test_every_typed_word_must_start_a_word_of_the_title(catalogue, db):
    found = suggest("dark wid")
    assert found and all(s.kind == "product" for s in found)
    for s in found:
        words = s.text.lower().replace("-", " ").split()
        assert any(w.startswith("dark") for w in words) and any(w.startswith("wid") for w in words)
    assert suggest("t-sh")[0].text == "T-shirts & tops"
    assert suggest("zzq") == []
    assert suggest("a") == []  # one letter: nothing yet
    assert len(suggest("s", k=3)) == 0 and len(suggest("sn", k=3)) == 3


def test_suggest_treats_like_and_tsquery_syntax_as_text(catalogue, db):
    for text in ["10%_", "a\\b", "dark & !", "(tro)", "tro:*", "'tro'"]:
        suggest(text)  # no SQL error


def test_api_suggest(catalogue, db, client):
    body = client.get("/api/suggest", {"q": "snea", "k": 3}).json()
    assert body["query"] == "snea"
    assert [s["kind"] for s in body["suggestions"]] == ["category", "product", "product"]
    assert body["suggestions"][0] == {
        "text": "Sneakers",
        "kind": "category",
        "url": "http://testserver/?category=Sneakers",
    }
    assert body["suggestions"][1]["url"].startswith("http://testserver/p/SM-")
    assert client.get("/api/suggest").json() == {"query": "", "suggestions": []}


@pytest.mark.parametrize(
    "params, message",
    [
        ({"q": "tro", "k": "0"}, "k must be from 1 to 20"),
        ({"q": "tro", "k": "21"}, "k must be from 1 to 20"),
        ({"q": "tro", "k": "many"}, "k must be a whole number"),
        ({"q": "x" * 101}, "q is longer than 100 characters"),
        ({"q": "tro\x00"}, "q: Null characters"),
    ],
)
def test_api_suggest_refuses_bad_parameters(catalogue, db, client, params, message):
    response = client.get("/api/suggest", params)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_api_search_says_what_it_corrected(catalogue, db, client):
    body = client.get("/api/search", {"q": "dark trowsers", "mode": "hybrid", "k": 3}).json()
    assert body["query"] == "dark trowsers"
    assert body["corrected_query"] == "dark trousers" and body["corrections"] == {"trowsers": "trousers"}
    assert [r["category"] for r in body["results"]] == ["Trousers"] * 3
    plain = client.get("/api/search", {"q": "trowsers", "mode": "keyword", "correct": "false"}).json()
    assert plain["corrected_query"] is None and plain["results"] == []
    response = client.get("/api/search", {"q": "trowsers", "correct": "perhaps"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("correct must be true or false")
