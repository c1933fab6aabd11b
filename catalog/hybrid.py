"""Fusing ranked lists into one ranking: pure functions, no Django, no database.

Reciprocal rank fusion (Cormack et al., 2009): an item's fused score is the sum over the
lists it appears in of ``weight / (k + rank)`` (rank starting at 1). It needs no score
calibration between lists, which matters here: cosine similarities of MiniLM, of image
features and ts_rank_cd values live on unrelated scales.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

DEFAULT_RRF_K = 60

T = TypeVar("T", bound=Hashable)


@dataclass
class Fused(Generic[T]):
    item: T
    score: float  # normalised RRF: 1.0 = first in every list that has results
    sources: dict[str, float] = field(default_factory=dict)  # list name -> that list's own score


def rrf(
    rankings: Mapping[str, Sequence[tuple[T, float]]],
    *,
    k: int = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
    restrict_to: Sequence[T] | None = None,
) -> list[Fused[T]]:
    """Fuse ranked ``(item, score)`` lists, best first.

    ``weights`` default to 1 per list. The fused score is divided by the best score
    possible from the lists that returned anything, so it lies in (0, 1] and a query
    whose words match nothing (an empty keyword list) still scores its semantic hits on
    the same scale. ``restrict_to`` keeps only those items (a re-ranking of one list by
    the others). Ties keep the order of first appearance, so fusion is deterministic.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    weights = weights or {}
    totals: dict[T, float] = {}
    sources: dict[T, dict[str, float]] = {}
    best = 0.0
    for name, ranking in rankings.items():
        weight = float(weights.get(name, 1.0))
        if not ranking or weight <= 0:
            continue
        best += weight / (k + 1)
        for rank, (item, score) in enumerate(ranking, start=1):
            if item in sources and name in sources[item]:
                continue  # a duplicate further down the same list counts once
            totals[item] = totals.get(item, 0.0) + weight / (k + rank)
            sources.setdefault(item, {})[name] = score
    allowed = set(restrict_to) if restrict_to is not None else None
    order = {item: i for i, item in enumerate(totals)}
    fused = [
        Fused(item, total / best, sources[item])
        for item, total in totals.items()
        if allowed is None or item in allowed
    ]
    fused.sort(key=lambda f: (-f.score, order[f.item]))
    return fused
