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

import numpy as np

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

    A list with a negative weight (what the shopper wants less of) subtracts
    ``|weight| / (k + rank)`` from the items the positive lists found, and adds none: it
    demotes an item by how near the top of that list it is. The score may then be <= 0.
    """
    return [Fused(item, score, sources) for item, score, sources in rrf_scored(rankings, k, weights, restrict_to)]


def rrf_scored(
    rankings: Mapping[str, Sequence[tuple[T, float]]],
    k: int = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
    restrict_to: Sequence[T] | None = None,
) -> list[tuple[T, float, dict[str, float]]]:
    """rrf() as (item, score, sources) tuples: a search fuses a few hundred candidates per
    query, and building a Fused for each cost as much as the fusion."""
    if k < 1:
        raise ValueError("k must be >= 1")
    weights = weights or {}
    totals: dict[T, float] = {}
    sources: dict[T, dict[str, float]] = {}
    best = 0.0
    live = [(name, ranking, float(weights.get(name, 1.0))) for name, ranking in rankings.items() if ranking]
    # Positive lists first: they decide which items are candidates at all.
    live.sort(key=lambda entry: entry[2] < 0)
    for name, ranking, weight in live:
        if weight == 0:
            continue
        if weight > 0:
            best += weight / (k + 1)
        counted: set[T] = set()  # a duplicate further down the same list counts once
        for rank, (item, score) in enumerate(ranking, start=1):
            if item in counted or (weight < 0 and item not in totals):
                continue
            counted.add(item)
            totals[item] = totals.get(item, 0.0) + weight / (k + rank)
            found = sources.get(item)
            if found is None:
                sources[item] = {name: score}
            else:
                found[name] = score
    if best == 0:
        return []
    allowed = set(restrict_to) if restrict_to is not None else None
    fused = [
        (item, total / best, sources[item]) for item, total in totals.items() if allowed is None or item in allowed
    ]
    # Stable: equal scores keep the order of first appearance (totals is in that order).
    fused.sort(key=lambda f: -f[1])
    return fused


# --- fitting the fusion weights ----------------------------------------------------------

WEIGHT_GRID = (0.0, 0.5, 1.0, 2.0)  # per signal; only ratios matter, so this spans 1:4 to 4:1
METRICS = ("map@10", "r@1")


@dataclass
class FitQuery(Generic[T]):
    rankings: Mapping[str, Sequence[tuple[T, float]]]  # signal -> its ranked list for this query
    relevant: frozenset[T]
    metric: str  # "map@10" or "r@1"
    group: str  # the query kind; the objective averages kinds, not queries
    exclude: frozenset[T] = frozenset()  # items left out of the ranking (e.g. the query's own product)


@dataclass
class FitResult:
    weights: dict[str, float]  # the chosen weights (zeros included)
    objective: float  # mean over kinds of the mean metric, with these weights
    per_group: dict[str, float]  # kind -> mean metric, with these weights
    singles: dict[str, float] = field(default_factory=dict)  # signal alone -> objective
    equal: float = 0.0  # equal weights -> objective


def _combos(n: int, grid: Sequence[float]) -> np.ndarray:
    """(n, C) weight columns: equal weights first, then each signal alone, then the rest."""
    grid_arr = np.array(grid, dtype=np.float64)
    mesh = np.stack(np.meshgrid(*[grid_arr] * n, indexing="ij"), axis=-1).reshape(-1, n)
    mesh = mesh[mesh.sum(axis=1) > 0]
    first = [np.ones(n)] + [np.eye(n)[i] for i in range(n)]
    return np.concatenate([np.stack(first), mesh]).T


def _query_scores(query: FitQuery, signals: Sequence[str], combos: np.ndarray, k: int) -> np.ndarray:
    """(C,) the query's metric under every weight column."""
    index: dict = {}
    rows: list[list[float]] = []
    for s, name in enumerate(signals):
        seen: set = set()
        for rank, (item, _) in enumerate(query.rankings.get(name, ()), start=1):
            if item in seen or item in query.exclude:
                continue
            seen.add(item)
            if item not in index:
                index[item] = len(rows)
                rows.append([0.0] * len(signals))
            rows[index[item]][s] = 1.0 / (k + rank)
    if not rows or not query.relevant:
        return np.zeros(combos.shape[1])
    fused = np.asarray(rows) @ combos  # (items, C)
    depth = min(10, fused.shape[0])
    top = np.argsort(-fused, axis=0, kind="stable")[:depth]  # ties keep first appearance
    items = list(index)
    is_relevant = np.array([item in query.relevant for item in items])
    hits = is_relevant[top].astype(np.float64)  # (depth, C)
    # An item no list returned has no fused score at all: it cannot rank.
    hits *= np.take_along_axis(fused, top, axis=0) > 0
    if query.metric == "r@1":
        return hits[0]
    if query.metric != "map@10":
        raise ValueError(f"unknown metric {query.metric!r}; use one of {METRICS}")
    precision = np.cumsum(hits, axis=0) / np.arange(1, depth + 1)[:, None]
    return (precision * hits).sum(axis=0) / min(10, len(query.relevant))


def fit_weights(
    queries: Sequence[FitQuery],
    signals: Sequence[str],
    *,
    k: int = DEFAULT_RRF_K,
    grid: Sequence[float] = WEIGHT_GRID,
    reference: Mapping[str, float] | None = None,
    min_gain: float = 0.01,
) -> FitResult:
    """The grid weights that maximise the mean over query kinds of the mean metric.

    The grid holds every signal alone and equal weights, so on these queries the fitted
    fusion is never below its best single signal (ties go to equal weights, then to a
    single signal). With ``reference`` (e.g. the untrained baseline's composition), only
    weights that are no worse than it on any query kind by more than ``min_gain`` compete
    (the activation gate's own rule: a gain on one kind does not buy a loss on another),
    and the best of them replaces it only when it beats it by more than max(min_gain, one
    standard error of the per-query difference): few probe queries must not talk a model
    out of what is known to work.
    """
    signals = list(signals)
    if not signals:
        raise ValueError("no signals to fit")
    combos = _combos(len(signals), grid)
    if reference is not None:
        ref = np.array([[float(reference.get(name, 0.0))] for name in signals])
        if ref.sum() <= 0:
            raise ValueError("reference weights are all zero")
        combos = np.concatenate([combos, ref], axis=1)  # the last column
    by_group: dict[str, list[np.ndarray]] = {}
    for query in queries:
        by_group.setdefault(query.group, []).append(_query_scores(query, signals, combos, k))
    if not by_group:
        equal = dict.fromkeys(signals, 1.0)
        return FitResult(equal, 0.0, {}, {}, 0.0)
    group_means = {g: np.mean(np.stack(v), axis=0) for g, v in by_group.items()}  # g -> (C,)
    objective = np.mean(np.stack(list(group_means.values())), axis=0)
    eligible = np.ones(combos.shape[1], dtype=bool)
    if reference is not None:
        for means in group_means.values():
            eligible &= means >= means[-1] - min_gain  # the reference (last column) always is
    ranked = np.where(eligible, objective, -np.inf)
    best = int(np.argmax(ranked >= ranked.max() - 1e-12))  # first of the best
    if reference is not None:
        # Per query, weighted so that each kind counts once (as in the objective).
        per_query = np.concatenate([np.stack(v) / len(v) / len(by_group) for v in by_group.values()])
        diff = (per_query[:, best] - per_query[:, -1]) * len(per_query)
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("inf")
        if objective[best] - objective[-1] <= max(min_gain, se):
            best = combos.shape[1] - 1
    return FitResult(
        weights={name: float(combos[i, best]) for i, name in enumerate(signals)},
        objective=float(objective[best]),
        per_group={g: float(m[best]) for g, m in group_means.items()},
        singles={name: float(objective[1 + i]) for i, name in enumerate(signals)},
        equal=float(objective[0]),
    )
