from __future__ import annotations

import pytest
import torch

from ml.config import TextTowerCfg
from ml.losses import CrossModalTripletLoss
from ml.query_views import TextViews
from ml.tokenizer import UNK
from ml.towers import GRUTextTower
from ml.wordnet import wordnet_available


def views_of(texts, titles, categories) -> TextViews:
    return TextViews(None, titles, categories, texts, seed=0)


def test_a_view_is_not_a_negative_for_products_it_also_describes():
    views = views_of(
        ["Dark coat. Warm wool", "Dark dress. Light fabric", "Pale coat"],
        ["Dark coat", "Dark dress", "Pale coat"],
        ["Coats", "Dresses", "Coats"],
    )
    mask = views.also_described([0, 1, 2], [["dark"], ["dress"], ["coat"]])
    # "dark" (product 0's view) also describes product 1, not product 2
    assert mask[:, 0].tolist() == [False, True, False]
    # "dress" describes only product 1 itself
    assert mask[:, 1].tolist() == [False, False, False]
    # "coat" (product 2's view) also describes product 0
    assert mask[:, 2].tolist() == [True, False, False]


def test_full_texts_mask_nothing():
    views = views_of(["dark coat", "dark coat"], ["dark coat", "dark coat"], ["Coats", "Coats"])
    assert not views.also_described([0, 1], [views.full[0], views.full[1]]).any()


def test_masked_pairs_are_never_negatives():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # each text sits on the other image
    loss = CrossModalTripletLoss(margin=0.4)
    assert loss(image, text) > 1.0  # the swapped texts are hard negatives
    everything_masked = torch.tensor([[False, True], [True, False]])
    value, stats = loss(image, text, not_negative=everything_masked, return_stats=True)
    assert value.item() == 0.0 and stats["active"] == 0.0


def test_views_are_short_parts_of_the_product_text():
    views = views_of(["Slim dark trousers. Cut for comfort"], ["Slim dark trousers"], ["Trousers"])
    seen = {tuple(views.view(0)) for _ in range(200)}
    allowed_words = set(views.full[0]) | set(views.category[0])
    assert tuple(views.full[0]) in seen and tuple(views.title[0]) in seen
    assert any(len(v) <= 4 for v in seen)
    assert all(set(v) <= allowed_words for v in seen)


@pytest.mark.skipif(not wordnet_available(), reason="Debian package wordnet-base is not installed (make debian-data)")
def test_views_swap_catalogue_words_for_wordnet_shopper_terms():
    texts = ["Dark trousers. Cut for comfort", "Light coat"]
    tower = GRUTextTower(TextTowerCfg(vocab_source="none"), texts=[*texts, "jean jeans chino black pale"])
    views = TextViews(tower, ["Dark trousers", "Light coat"], ["Trousers", "Coats"], texts, seed=0)
    index = tower.vocab._index
    trousers = index["trousers"]
    assert [index["jean"]] in views.shopper_terms[trousers]  # only terms the tower knows
    assert [index["jeans"]] in views.shopper_terms[trousers]  # and their plurals
    assert all(UNK not in ids for terms in views.shopper_terms.values() for ids in terms)
    seen = {tuple(views.swapped([trousers])) for _ in range(400)}
    assert (trousers,) in seen and (index["jean"],) in seen and (index["chino"],) in seen
