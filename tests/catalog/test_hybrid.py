"""The fusion rule on hand-made rankings: pure functions, no database."""
from __future__ import annotations

import pytest

from catalog.hybrid import rrf


def test_it_matches_hand_computed_rrf_scores():
    rankings = {"semantic": [("a", 0.9), ("b", 0.8), ("c", 0.7)], "keyword": [("c", 0.6), ("a", 0.5)]}
    fused = rrf(rankings, k=60)
    # a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62; best possible: 2/61
    assert [f.item for f in fused] == ["a", "c", "b"]
    best = 2 / 61
    assert fused[0].score == pytest.approx((1 / 61 + 1 / 62) / best)
    assert fused[1].score == pytest.approx((1 / 63 + 1 / 61) / best)
    assert fused[2].score == pytest.approx((1 / 62) / best)
    assert fused[0].sources == {"semantic": 0.9, "keyword": 0.5}
    assert fused[2].sources == {"semantic": 0.8}


def test_first_in_every_list_scores_one():
    fused = rrf({"x": [(1, 0.1)], "y": [(1, 0.2)]})
    assert fused[0].score == pytest.approx(1.0)


def test_an_empty_list_does_not_lower_the_scale():
    # A query whose words are not in the catalogue: keyword is empty, semantic still ranks.
    fused = rrf({"semantic": [("a", 0.5), ("b", 0.4)], "keyword": []})
    assert [f.item for f in fused] == ["a", "b"]
    assert fused[0].score == pytest.approx(1.0)


def test_weights_and_small_k_change_the_order():
    rankings = {"image": [("a", 0.9), ("b", 0.8)], "keyword": [("b", 0.9), ("a", 0.1)]}
    # Equal weights: a and b tie, first appearance (a) wins.
    assert [f.item for f in rrf(rankings, k=1)] == ["a", "b"]
    assert [f.item for f in rrf(rankings, k=1, weights={"keyword": 2.0})] == ["b", "a"]


def test_restrict_to_re_ranks_one_list():
    rankings = {"image": [("a", 0.9), ("b", 0.8)], "semantic": [("z", 0.9), ("b", 0.8)]}
    fused = rrf(rankings, restrict_to=["a", "b"])
    assert [f.item for f in fused] == ["b", "a"]


def test_a_duplicate_in_one_list_counts_once():
    fused = rrf({"x": [("a", 0.9), ("a", 0.5), ("b", 0.4)]}, k=60)
    assert fused[0].score == pytest.approx(1.0)
    assert fused[1].score == pytest.approx(61 / 63)


def test_bad_k_is_refused():
    with pytest.raises(ValueError):
        rrf({"x": [("a", 1.0)]}, k=0)
