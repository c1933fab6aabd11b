"""Probe queries made from held-out products (ml/probes.py): pure Python, no services."""

from __future__ import annotations

from ml.probes import KINDS, PHOTO_WORDS_MAX_RELEVANT, ProbeItem, build_probes, split_halves

TITLES = {
    "Shoes": ["red leather boot", "red canvas sneaker", "blue leather boot", "green sandal", "blue suede shoe"],
    "Bags": ["red leather tote", "blue canvas tote", "small leather bag", "green tote"],
}


def catalogue() -> list[ProbeItem]:
    items = []
    for category, titles in TITLES.items():
        for n, title in enumerate(titles):
            sku = f"{category[0]}{n}"
            items.append(ProbeItem(sku, title, category, f"{title} {category}", image_hash=sku))
    return items


def test_photo_words_probes_pair_a_photo_with_a_word_that_narrows_its_category():
    items = catalogue()
    by_sku = {item.sku: item for item in items}
    probes = build_probes(items, [item.sku for item in items], seed=3, per_kind=100)
    photo_words = [p for p in probes if p.kind == "photo_words"]
    assert photo_words and all(p.metric == "map@10" for p in photo_words)
    photo_seeds = {p.sku: p.seed for p in probes if p.kind == "photo"}
    for p in photo_words:
        source = by_sku[p.sku]
        assert p.text in source.title.split() and p.seed == photo_seeds[p.sku]  # the photo probe's own photo
        expected = {i.sku for i in items if i.category == source.category and p.text in i.title.split()}
        assert p.relevant == expected and p.sku in p.relevant
        category_size = sum(i.category == source.category for i in items)
        assert 2 <= len(p.relevant) <= min(PHOTO_WORDS_MAX_RELEVANT, category_size - 1)
    # "green" is in one title per category: it narrows to one product, so it is never the word.
    assert "green" not in {p.text for p in photo_words}
    # "sandal" is the only word of its title that no other shoe has: no photo + words probe.
    assert "S3" not in {p.sku for p in photo_words}


def test_probes_are_deterministic_and_the_halves_split_by_product():
    items = catalogue()
    heldout = [item.sku for item in items]
    first = build_probes(items, heldout, seed=5, per_kind=100)
    assert first == build_probes(items, heldout, seed=5, per_kind=100)
    assert {p.kind for p in first} <= set(KINDS)
    fit, judge = split_halves(first)
    assert fit and judge and not {p.sku for p in fit} & {p.sku for p in judge}
