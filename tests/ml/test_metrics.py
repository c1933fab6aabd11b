from __future__ import annotations

import numpy as np
import pytest

from ml.metrics import (
    average_precision_at_k,
    mrr_at_k,
    precision_at_k,
    rank_by_similarity,
    recall_at_k,
    retrieval_metrics,
)

RANKED = ["a", "x", "b", "y", "c"]
RELEVANT = {"a", "b", "c", "d"}


def test_recall_precision_mrr() -> None:
    assert recall_at_k(RANKED, RELEVANT, 1) == 0.25
    assert recall_at_k(RANKED, RELEVANT, 3) == 0.5
    assert precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(3 / 5)
    assert mrr_at_k(["x", "y", "b"], RELEVANT, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "b"], RELEVANT, 2) == 0.0


def test_average_precision_known_value() -> None:
    # hits at ranks 1, 3, 5: (1/1 + 2/3 + 3/5) / min(10, 4)
    assert average_precision_at_k(RANKED, RELEVANT, 10) == pytest.approx((1 + 2 / 3 + 3 / 5) / 4)
    # k=2: one hit at rank 1, normalised by min(2, 4) = 2
    assert average_precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.5)
    assert average_precision_at_k(["a"], {"a"}, 10) == 1.0
    assert average_precision_at_k(["x", "a"], {"a"}, 10) == 0.5


def test_retrieval_metrics_means_over_queries() -> None:
    out = retrieval_metrics([["a", "b"], ["b", "a"]], [{"a"}, {"a"}], ks=(1, 2))
    assert out["recall@1"] == 0.5
    assert out["recall@2"] == 1.0
    assert out["mrr@2"] == pytest.approx(0.75)
    assert out["map@2"] == pytest.approx(0.75)
    assert out["queries"] == 2


def test_rank_by_similarity_orders_by_dot_product() -> None:
    items = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    queries = np.array([[0.0, 1.0], [1.0, 0.1]])
    assert rank_by_similarity(queries, items, ["p", "q", "r"], 2) == [["q", "r"], ["p", "r"]]
    assert rank_by_similarity(queries, items, ["p", "q", "r"], 5)[0] == ["q", "r", "p"]
