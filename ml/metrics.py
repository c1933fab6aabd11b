"""Retrieval metrics over ranked id lists (pure numpy/python)."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence

import numpy as np

Ranked = Sequence[Hashable]
Relevant = Collection[Hashable]


def recall_at_k(ranked: Ranked, relevant: Relevant, k: int) -> float:
    # Fraction of the relevant items found in the top k.
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def hit_at_k(ranked: Ranked, relevant: Relevant, k: int) -> float:
    # 1 if any relevant item is in the top k ("Recall@k" in most retrieval papers).
    return float(any(r in relevant for r in ranked[:k]))


def precision_at_k(ranked: Ranked, relevant: Relevant, k: int) -> float:
    return sum(1 for r in ranked[:k] if r in relevant) / k


def mrr_at_k(ranked: Ranked, relevant: Relevant, k: int) -> float:
    for i, r in enumerate(ranked[:k], start=1):
        if r in relevant:
            return 1.0 / i
    return 0.0


def average_precision_at_k(ranked: Ranked, relevant: Relevant, k: int) -> float:
    """AP@k = sum_{i<=k} P@i * rel_i / min(k, n_relevant)."""
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for i, r in enumerate(ranked[:k], start=1):
        if r in relevant:
            hits += 1
            total += hits / i
    return total / min(k, len(relevant))


def retrieval_metrics(
    ranked_lists: Sequence[Ranked], relevant_sets: Sequence[Relevant], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Means over queries: recall@k, hit@k, precision@k, mrr@k, map@k for each k."""
    if len(ranked_lists) != len(relevant_sets):
        raise ValueError("one relevant set per ranked list")
    out: dict[str, float] = {"queries": float(len(ranked_lists))}
    fns = {
        "recall": recall_at_k,
        "hit": hit_at_k,
        "precision": precision_at_k,
        "mrr": mrr_at_k,
        "map": average_precision_at_k,
    }
    for k in ks:
        for name, fn in fns.items():
            values = [fn(r, rel, k) for r, rel in zip(ranked_lists, relevant_sets)]
            out[f"{name}@{k}"] = float(np.mean(values)) if values else 0.0
    return out


def rank_by_similarity(
    queries: np.ndarray, items: np.ndarray, item_ids: Sequence[Hashable], k: int
) -> list[list[Hashable]]:
    """Top-k item ids per query by dot product (cosine for unit vectors)."""
    sims = queries @ items.T
    k = min(k, items.shape[0])
    top = (
        np.argpartition(-sims, k - 1, axis=1)[:, :k]
        if k < items.shape[0]
        else np.tile(np.arange(items.shape[0]), (len(queries), 1))
    )
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable"), axis=1)
    return [[item_ids[j] for j in row] for row in order]


def score_ranking(ranked: Ranked, relevant: Relevant, metric: str) -> float:
    """One query's score by name: "map@10" (AP@10 over min(10, #relevant)) or "r@1" (hit at 1)."""
    if metric == "map@10":
        return average_precision_at_k(ranked, relevant, 10)
    if metric == "r@1":
        return hit_at_k(ranked, relevant, 1)
    raise ValueError(f"unknown metric {metric!r}")


def evaluate(image_emb: np.ndarray, text_emb: np.ndarray, groups: Sequence[int], k: int = 10) -> dict[str, float]:
    """text->image and image->text retrieval among the given products.

    Products sharing a group (category + title) count as relevant to each other.
    """
    ids = list(range(len(groups)))
    relevant = [{j for j in ids if groups[j] == groups[i]} for i in ids]
    out: dict[str, float] = {}
    for prefix, queries, items in (("t2i", text_emb, image_emb), ("i2t", image_emb, text_emb)):
        ranked = rank_by_similarity(queries, items, ids, k)
        for name, value in retrieval_metrics(ranked, relevant, ks=(1, 5, k)).items():
            out[f"{prefix}_{name}"] = value
    return out
