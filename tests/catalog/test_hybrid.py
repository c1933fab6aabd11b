"""The fusion rule on hand-made rankings: pure functions, no database."""

from __future__ import annotations

import random

import pytest

from catalog.hybrid import rrf, rrf_scored


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


def reference_rrf(rankings, k=60, weights=None, restrict_to=None):
    """rrf() as it was written first (a Fused per item, sorted by score then first appearance)."""
    weights = weights or {}
    totals, sources, best = {}, {}, 0.0
    live = [(name, ranking, float(weights.get(name, 1.0))) for name, ranking in rankings.items() if ranking]
    live.sort(key=lambda entry: entry[2] < 0)
    for name, ranking, weight in live:
        if weight == 0:
            continue
        if weight > 0:
            best += weight / (k + 1)
        for rank, (item, score) in enumerate(ranking, start=1):
            if item in sources and name in sources[item]:
                continue
            if weight < 0 and item not in totals:
                continue
            totals[item] = totals.get(item, 0.0) + weight / (k + rank)
            sources.setdefault(item, {})[name] = score
    if best == 0:
        return []
    allowed = set(restrict_to) if restrict_to is not None else None
    order = {item: i for i, item in enumerate(totals)}
    fused = [
        (item, total / best, sources[item]) for item, total in totals.items() if allowed is None or item in allowed
    ]
    fused.sort(key=lambda f: (-f[1], order[f[0]]))
    return fused


def test_scored_tuples_are_the_first_rrf_exactly():
    # duplicates, ties, negative and zero weights, restrict_to: the same items, scores (to the
    # bit) and sources in the same order
    rng = random.Random(3)
    for _ in range(500):
        rankings = {
            name: [(rng.randrange(40), rng.choice([0.5, 0.25, rng.random()])) for _ in range(rng.randrange(0, 30))]
            for name in rng.sample(["a", "b", "c", "d", "e"], rng.randrange(1, 5))
        }
        weights = (
            {name: rng.choice([1.0, 0.5, 2.0, 0.0, -0.5, -1.0]) for name in rankings} if rng.random() < 0.7 else None
        )
        restrict = rng.sample(range(40), 15) if rng.random() < 0.3 else None
        k = rng.choice([1, 5, 60])
        expected = reference_rrf(rankings, k, weights, restrict)
        assert rrf_scored(rankings, k, weights, restrict) == expected
        fused = rrf(rankings, k=k, weights=weights, restrict_to=restrict)
        assert [(f.item, f.score, f.sources) for f in fused] == expected


def test_fitted_fusion_is_never_below_its_best_single_signal():
    import random

    from catalog.hybrid import FitQuery, fit_weights

    rng = random.Random(0)
    items = list(range(60))
    queries = []
    for q in range(40):
        relevant = frozenset(rng.sample(items, 5))
        good = sorted(items, key=lambda i: (i not in relevant, rng.random()))  # relevant first
        noisy = sorted(items, key=lambda i: (rng.random() < 0.5 and i not in relevant, rng.random()))
        random_list = rng.sample(items, len(items))
        rankings = {
            "good": [(i, 0.0) for i in (good if q % 3 else noisy)],
            "noisy": [(i, 0.0) for i in noisy],
            "random": [(i, 0.0) for i in random_list],
        }
        queries.append(FitQuery(rankings, relevant, "map@10" if q % 2 else "r@1", "kind-a" if q % 4 else "kind-b"))
    result = fit_weights(queries, ["good", "noisy", "random"])
    assert result.objective >= max(result.singles.values()) - 1e-12
    assert result.objective >= result.equal - 1e-12
    assert result.weights["random"] == 0.0  # a useless list gets no say
    assert set(result.per_group) == {"kind-a", "kind-b"}


def test_fit_respects_excluded_items_and_unknown_metrics_fail():
    import pytest

    from catalog.hybrid import FitQuery, fit_weights

    q = FitQuery({"a": [(1, 0.0), (2, 0.0)]}, frozenset({2}), "r@1", "k", exclude=frozenset({1}))
    assert fit_weights([q], ["a"]).objective == 1.0  # 1 is left out, so 2 ranks first
    with pytest.raises(ValueError, match="metric"):
        fit_weights([FitQuery({"a": [(1, 0.0)]}, frozenset({1}), "ndcg", "k")], ["a"])


def test_a_reference_composition_stays_unless_beaten_clearly():
    from catalog.hybrid import FitQuery, fit_weights

    # "a" is the known-good reference; "b" is as good on these few queries, never better by much.
    queries = [FitQuery({"a": [(1, 0.0), (2, 0.0)], "b": [(1, 0.0), (3, 0.0)]}, frozenset({1}), "r@1", "k")] * 3
    assert fit_weights(queries, ["a", "b"], reference={"a": 1.0}).weights == {"a": 1.0, "b": 0.0}
    # Clearly better on many queries: the fit moves away from the reference.
    better = [FitQuery({"a": [(2, 0.0), (1, 0.0)], "b": [(1, 0.0), (2, 0.0)]}, frozenset({1}), "r@1", "k")] * 20
    assert fit_weights(better, ["a", "b"], reference={"a": 1.0}).weights["b"] > 0


def test_a_gain_on_one_kind_does_not_buy_a_loss_on_another():
    from catalog.hybrid import FitQuery, fit_weights

    # "b" alone is far better on paraphrases and worse on keywords than the reference "a":
    # the best mean, but the gate would refuse it (worse on keywords), so the fit keeps "a".
    keyword_a = FitQuery({"a": [(1, 0.0), (2, 0.0)], "b": [(2, 0.0), (1, 0.0)]}, frozenset({1}), "map@10", "keyword")
    paraphrase_b = FitQuery({"a": [(2, 0.0), (1, 0.0)], "b": [(1, 0.0), (2, 0.0)]}, frozenset({1}), "r@1", "paraphrase")
    queries = [keyword_a] * 10 + [paraphrase_b] * 30
    plain = fit_weights(queries, ["a", "b"])
    assert plain.per_group["keyword"] < 1.0  # without a reference the mean alone decides
    kept = fit_weights(queries, ["a", "b"], reference={"a": 1.0})
    assert kept.per_group["keyword"] == 1.0  # no kind below the reference's
    assert kept.per_group["paraphrase"] >= 0.0
