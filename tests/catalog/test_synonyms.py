"""Synonyms for keyword search (catalog/synonyms.py, migration 0013) on real Postgres, the
40-product fixture catalogue and the Debian WordNet."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from catalog.facets import search_facets
from catalog.keyword import keyword_search
from catalog.models import Product, Synonym
from catalog.search import search
from catalog.suggest import correct_query
from catalog.synonyms import enabled, expansions, groups, phrases, refresh, without_synonyms
from ml import wordnet
from tests.catalog.test_search import catalogue  # noqa: F401  (module fixture)

pytestmark = pytest.mark.skipif(not wordnet.wordnet_available(), reason="needs Debian wordnet-base")


def categories(hits) -> set[str]:
    return {Product.objects.get(pk=pid).category for pid, _ in hits}


def test_the_import_looked_up_every_catalogue_word(catalogue, db):
    with connection.cursor() as cursor:
        cursor.execute("""SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM catalog_synonymlookup l
                                                          WHERE l.word = w.word)), count(*)
                          FROM catalog_searchword w""")
        todo, words = cursor.fetchone()
    assert words > 50 and todo == 0
    # "trousers" -> its WordNet synonym "pant" and broader term "garment"; a second refresh adds nothing.
    assert Synonym.objects.filter(source="wordnet", word="trousers", term__in=["pant", "garment"]).count() == 2
    assert refresh() == 0
    # An admin removes a WordNet synonym: the next refresh does not bring it back.
    Synonym.objects.filter(term="pant", word="trousers").delete()
    assert refresh() == 0 and not Synonym.objects.filter(term="pant", word="trousers").exists()


def test_a_word_the_catalogue_never_uses_finds_the_catalogue_word(catalogue, db):
    assert expansions("pants")["pants"] == ["trousers"]  # plural: looked up by its English stem
    found = keyword_search("pants", 50)
    assert found and categories(found) == {"Trousers"}
    # Every word must still match: the dark trousers first, then the rest.
    dark = keyword_search("dark pants", 50)
    top = Product.objects.get(pk=dark[0][0])
    assert top.category == "Trousers" and "dark" in (top.title + top.description).lower()
    assert dark[0][1] >= 0.5 > dark[-1][1]


def test_a_broader_term_finds_every_narrower_word_the_shop_uses(catalogue, db):
    found = expansions("garment")["garment"]
    assert {"trousers", "shirt"} <= set(found)
    assert {"Trousers", "T-shirts & tops"} <= categories(keyword_search("garment", 50))


def test_a_narrower_term_finds_the_broader_thing_the_shop_sells(catalogue, db):
    # Jeans are a kind of trousers, a tote a kind of bag: the shop's trousers and bags answer them.
    assert "trousers" in expansions("jeans")["jeans"]
    assert categories(keyword_search("jeans", 50)) == {"Trousers"}
    assert categories(keyword_search("tote", 50)) == {"Bags"}


def test_a_term_two_levels_up_finds_the_shop_words_below_it(catalogue, db):
    # sneaker -> shoe -> footwear
    assert Synonym.objects.filter(term="footwear", word="sneakers", source="related").exists()
    assert "Sneakers" in categories(keyword_search("footwear", 50))


def test_related_words_give_way_to_a_nearer_synonym(catalogue, db):
    # "clothing" is two levels above trousers (a related row); once a nearer row exists for
    # the term (here an admin's), the term expands to that alone.
    assert Synonym.objects.filter(term="clothing", source="related").exists()
    Synonym.objects.create(term="clothing", word="bag", source="admin")
    assert expansions("clothing")["clothing"] == ["bag"]


def test_words_the_catalogue_uses_mean_what_the_catalogue_means(catalogue, db):
    # WordNet lists "bag" under "carryall"; the shop sells bags, so "bag" is searched as typed.
    assert Synonym.objects.filter(term="bag", source="wordnet").exists()
    assert "bag" not in expansions("bag")
    assert keyword_search("bag", 50) and categories(keyword_search("bag", 50)) == {"Bags"}


def test_an_admin_synonym_applies_to_every_search(catalogue, db):
    Synonym.objects.create(term="Kicks", word="sneakers")
    assert Synonym.objects.get(term="kicks").term_key == "kick"
    assert categories(keyword_search("kicks", 50)) == {"Sneakers"}
    # Admin rows apply even to a word the catalogue uses.
    Synonym.objects.create(term="bag", word="trousers")
    assert {"Bags", "Trousers"} <= categories(keyword_search("bag", 50))


def test_phrases_and_groups():
    assert phrases("Gym shoe dark") == ["gym", "shoe", "dark", "gym shoe", "shoe dark"]
    found = {"gym shoe": ["sneakers"], "pants": ["trousers"]}
    assert groups("gym shoe pants dark", found) == [["gym shoe", "sneakers"], ["pants", "trousers"], ["dark"]]


def test_search_syntax_is_searched_as_typed(catalogue, db):
    assert keyword_search('"pants"', 50) == []  # a quoted phrase means exactly these words
    assert keyword_search("pants -dark", 50) == []


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_search_and_facets_use_synonyms(catalogue, db, mode):
    result = search("pants", mode=mode, k=10)
    assert result.hits and result.hits[0].product.category == "Trousers"
    counts = {c.name: c.count for c in search_facets(result).categories if c.count}
    if mode == "keyword":  # counted over every full-text match: synonyms included
        assert counts == {"Trousers": Product.objects.filter(category="Trousers").count()}


def test_a_synonym_is_not_corrected_as_a_misspelling(catalogue, db):
    # "shoe" is one edit from the catalogue word "shot" ("product shot"), and no product says
    # "shoe": typo tolerance alone searched "shot". WordNet makes it a word for sneakers.
    assert correct_query("shoe") is None
    result = search("shoe", mode="hybrid", correct=True, k=5)
    assert result.correction is None and result.hits[0].product.category == "Sneakers"
    assert correct_query("snaekers").corrected == "sneakers"  # real typos are still corrected


def test_the_admin_adds_synonyms_with_clear_errors(catalogue, admin_client):
    add = reverse("admin:catalog_synonym_add")
    assert admin_client.post(add, {"term": "kicks", "word": "sneakers"}).status_code == 302
    again = admin_client.post(add, {"term": "Kick", "word": "sneakers"})
    assert again.status_code == 200 and "already stands for" in again.content.decode()
    only_stopwords = admin_client.post(add, {"term": "the", "word": "sneakers"})
    assert only_stopwords.status_code == 200 and "only words search ignores" in only_stopwords.content.decode()
    listing = admin_client.get(reverse("admin:catalog_synonym_changelist"), {"q": "pant"})
    assert listing.status_code == 200 and "trousers" in listing.content.decode()


def test_synonyms_can_be_turned_off(catalogue, db, settings):
    settings.SEARCH_SYNONYMS = False
    assert keyword_search("pants", 50) == [] and correct_query("shoe").corrected == "shot"


def test_without_synonyms_searches_the_words_as_typed(catalogue, db):
    with without_synonyms():
        assert not enabled() and keyword_search("pants", 50) == []
    assert enabled() and keyword_search("pants", 50)
