"""The activation gate: a trained model serves search only if it measures no worse.

When a gated model's vectors are complete (embeddings.registry sends
``model_ready_for_gate``), this module

1. makes probe queries from the products the model did not train on
   (ml/probes.py: keywords, paraphrases, words against photos only, perturbed
   photos, photos of "another item of this kind", a photo plus a narrowing word), split
   into two halves by product;
2. fits the model's fusion weights per search kind on the first half
   (catalog/hybrid.fit_weights over the real signal rankings), so its composition is never
   below its best single signal there, and how a photo + words search combines the two
   (catalog/search.photo_words_method: one composed joint vector, or the photo's
   neighbours re-ranked by the words), whichever scores higher there;
3. runs the second half through the real ``search()`` for the candidate and for the active
   model, kind by kind and mode by mode, and activates the candidate only if it is not
   worse on any kind beyond noise and better on at least one (``decide``). A kind judged
   worse resets the fitted fusion its searches use to the untrained baseline's composition,
   and the second half is judged once more (``fall_back``): a mix fitted on few probes that
   does not hold gives way to what is known to work, and the model's other gains still count.

Every probe's words and photo are encoded first, in batches, under both models, and the probe
searches run in GATE_THREADS threads (``in_parallel``): on the demo the gate takes about 20 s.

Keyword synonyms (catalog/synonyms.py) are off while it fits and judges: they are the same
for every model, and they invert the WordNet relation the paraphrase probes are made with.
With SEARCH_SYNONYMS on, keyword and paraphrase probes are also judged in hybrid mode *with*
them (mode "hybrid+synonyms"), as shoppers search: a mix fitted without them may weigh the
keyword list less than the baseline does, and that costs relevance only where synonyms make
that list strong. Such a row judged worse falls back like any hybrid row.

Noise, per kind: the paired per-query differences d (candidate - active) have mean m and
standard error se; the kind is *worse* when m < -max(MIN_NOISE, 2·se) and *better* when
m > max(MIN_NOISE, 2·se). Two standard errors is a ~95% one-sided bound; MIN_NOISE keeps
a 0.01 wobble from deciding anything on small catalogues.
"""

from __future__ import annotations

import contextvars
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from django.conf import settings
from django.db import connection, connections
from PIL import Image

from catalog import search_cache
from catalog.hybrid import FitQuery, fit_weights
from catalog.models import Product
from catalog.synonyms import synonyms_used, without_synonyms
from catalog.search import (
    FUSION_KINDS,
    PHOTO_WORDS_METHODS,
    QueryVectors,
    encode_queries_ahead,
    fusion_weights,
    image_query_vectors,
    kind_signals,
    photo_words_method,
    reuse_query_vectors,
    search,
    signal_rankings,
)
from ml.metrics import score_ranking
from embeddings.models import EmbeddingModel
from ml.perturb import perturb
from ml.probes import KINDS, PHOTO_KINDS, TEXT_KINDS, WITH_PHOTO, Probe, ProbeItem, build_probes, split_halves
from embeddings.registry import complete_gate, encoder_for
from ml.transforms import open_image

logger = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

MIN_NOISE = 0.01
FIT_DEPTH = 100  # how deep each signal's list is read when fitting
HELDOUT_FALLBACK_FRACTION = 0.15  # models trained elsewhere: probe a fixed sample instead

# What is judged: (probe kind, search mode). Words are judged in both text modes, because
# shoppers can pick either; "nodesc" is the words against the photos alone.
JUDGED = (
    ("keyword", "hybrid"),
    ("keyword", "semantic"),
    ("paraphrase", "hybrid"),
    ("paraphrase", "semantic"),
    ("nodesc", "text_photo"),
    ("photo", "photo"),
    ("photo_similar", "photo"),
    ("photo_words", "hybrid"),
    ("photo_words", "semantic"),
)
PHOTO_WORDS_MODES = ("hybrid", "semantic")
# Hybrid mode with keyword synonyms on, as the site serves it (judged only, never fitted).
HYBRID_WITH_SYNONYMS = "hybrid+synonyms"
JUDGED_WITH_SYNONYMS = (("keyword", HYBRID_WITH_SYNONYMS), ("paraphrase", HYBRID_WITH_SYNONYMS))


def catalogue_items() -> list[ProbeItem]:
    return [
        ProbeItem(p.sku, p.title, p.category, p.text_for_embedding, p.image_hash)
        for p in Product.objects.order_by("sku").only("sku", "title", "description", "category", "image_hash")
    ]


def heldout_skus(model: EmbeddingModel, items: Sequence[ProbeItem]) -> list[str]:
    """The products the model did not train on (recorded at training), else a fixed sample."""
    recorded = (model.training_data or {}).get("heldout_skus")
    if recorded:
        return list(recorded)
    skus = sorted(item.sku for item in items)
    random.Random(0).shuffle(skus)
    return skus[: max(1, int(len(skus) * HELDOUT_FALLBACK_FRACTION))]


def probe_photo(probe: Probe) -> Image.Image:
    product = Product.objects.get(sku=probe.sku)
    with product.image.open("rb") as handle:
        image = open_image(handle.read())
    return perturb(image, random.Random(probe.seed))


class ProbePhotos:
    """Each probe photo made once, and its query vectors encoded once per model."""

    def __init__(self) -> None:
        self.photos: dict[int, Image.Image] = {}
        self.vectors: dict[tuple[int, int], QueryVectors] = {}

    def photo(self, probe: Probe) -> Image.Image:
        if probe.seed not in self.photos:
            self.photos[probe.seed] = probe_photo(probe)
        return self.photos[probe.seed]

    def vectors_for(self, model: EmbeddingModel, probe: Probe) -> QueryVectors:
        key = (model.pk, probe.seed)
        if key not in self.vectors:
            self.vectors[key] = image_query_vectors(model, self.photo(probe))
        return self.vectors[key]

    def encode_ahead(self, model: EmbeddingModel, probes: Sequence[Probe]) -> None:
        """Encode the photos of `probes` under `model` now, in batches: one photo per forward
        pass cost the gate about 30 ms each, a batch a fraction of that."""
        todo = list(
            {p.seed: p for p in probes if p.kind in WITH_PHOTO and (model.pk, p.seed) not in self.vectors}.values()
        )
        if not todo:
            return
        encoded = encoder_for(model).encode_image_signals([self.photo(p) for p in todo])
        for i, p in enumerate(todo):
            self.vectors[(model.pk, p.seed)] = search_cache.frozen({c: vectors[i] for c, vectors in encoded.items()})


def in_parallel(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """[fn(item) for item in items], run by GATE_THREADS threads where that is safe. A probe's
    search waits on Postgres for about 40 % of its time, which another thread's Python then
    fills. One at a time inside a transaction (the tests'), whose rows other connections
    cannot see. Each thread runs in a copy of the caller's context (the synonyms switch, the
    reused query vectors) and closes its own database connection when done."""
    threads = min(settings.GATE_THREADS, len(items))
    if threads <= 1 or connection.in_atomic_block:
        return [fn(item) for item in items]
    results: list[Any] = [None] * len(items)
    pending = iter(enumerate(items))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def work() -> None:
        try:
            while not failures:
                with lock:
                    nxt = next(pending, None)
                if nxt is None:
                    return
                results[nxt[0]] = fn(nxt[1])
        except BaseException as exc:  # re-raised in the caller's thread below
            failures.append(exc)
        finally:
            connections.close_all()  # this thread's own connections only

    workers = [threading.Thread(target=contextvars.copy_context().run, args=(work,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]
    return results


def score(ranked: Sequence[str], probe: Probe) -> float:
    return score_ranking([sku for sku in ranked if sku not in probe.exclude][:10], probe.relevant, probe.metric)


# --- fitting -----------------------------------------------------------------------------


def baseline_weights(kind: str, signals: Sequence[str]) -> dict[str, float]:
    """The untrained baseline's composition, in a joint model's signals: what a joint model
    falls back to unless its own signals measurably help."""
    pretrained = {"text_minilm", "keyword", "photo_pretrained"}
    weights = {name: 1.0 for name in signals if name in pretrained}
    return weights or dict.fromkeys(signals, 1.0)


def fit_fusion(model: EmbeddingModel, probes: Sequence[Probe], photos: ProbePhotos | None = None) -> dict[str, Any]:
    """Fit and store ``model.fusion`` per search kind; returns what the fit measured."""
    text = [p for p in probes if p.kind in TEXT_KINDS]
    photo_probes = [p for p in probes if p.kind in PHOTO_KINDS]
    hybrid_signals = kind_signals(model, "hybrid")
    photo_signals = kind_signals(model, "photo")
    sku_of = dict(Product.objects.values_list("pk", "sku"))

    def by_sku(rankings: dict[str, list[tuple[int, float]]]) -> dict[str, list[tuple[str, float]]]:
        # Rankings hold product ids; probes name products by sku.
        return {
            name: [(sku_of[pid], score) for pid, score in ranking if pid in sku_of]
            for name, ranking in rankings.items()
        }

    text_queries = in_parallel(
        lambda p: FitQuery(
            by_sku(signal_rankings(model, hybrid_signals, FIT_DEPTH, q=p.text)), p.relevant, p.metric, p.kind
        ),
        text,
    )
    photos = photos or ProbePhotos()
    photo_queries = in_parallel(
        lambda p: FitQuery(
            by_sku(
                signal_rankings(model, photo_signals, FIT_DEPTH + len(p.exclude), photo=photos.vectors_for(model, p))
            ),
            p.relevant,
            p.metric,
            p.kind,
            p.exclude,
        ),
        photo_probes,
    )
    report: dict[str, Any] = {}
    fusion: dict[str, dict[str, float]] = {}
    for kind in FUSION_KINDS:
        signals = kind_signals(model, kind)
        queries = photo_queries if kind == "photo" else text_queries
        if not queries:
            continue
        result = fit_weights(queries, signals, k=settings.SEARCH_RRF_K, reference=baseline_weights(kind, signals))
        fusion[kind] = result.weights
        report[kind] = {
            "weights": result.weights,
            "objective": result.objective,
            "per_kind": result.per_group,
            "singles": result.singles,
            "equal": result.equal,
            "queries": len(queries),
        }
    model.fusion = fusion
    model.save(update_fields=["fusion"])
    return report


def fit_photo_words(model: EmbeddingModel, probes: Sequence[Probe], photos: ProbePhotos) -> dict[str, Any]:
    """Choose how `model` answers a photo + words search (catalog/search.photo_words_method):
    the method whose mean score over the fit half's photo_words probes, in hybrid and
    semantic mode, is higher; a tie re-ranks. Call after fit_fusion: re-ranking reads the
    photo and text fusion weights fitted there. Stored as ``model.fusion["photo_words"]``."""
    chosen = [p for p in probes if p.kind == "photo_words"]
    methods = PHOTO_WORDS_METHODS if model.joint else ("rerank",)
    if not chosen or len(methods) == 1:
        return {}
    means: dict[str, float] = {}
    for method in methods:
        model.fusion = {**(model.fusion or {}), "photo_words": {method: 1.0}}
        runs = [(p, mode) for p in chosen for mode in PHOTO_WORDS_MODES]
        means[method] = float(
            np.mean(in_parallel(lambda run: score(run_probe(model, run[0], run[1], photos), run[0]), runs))
        )
    best = max(methods, key=lambda m: (means[m], m == "rerank"))
    model.fusion = {**model.fusion, "photo_words": {best: 1.0}}
    model.save(update_fields=["fusion"])
    return {"method": best, "means": means, "queries": len(chosen)}


# --- judging -----------------------------------------------------------------------------


def run_probe(model: EmbeddingModel, probe: Probe, mode: str, photos: ProbePhotos | None = None) -> list[str]:
    """The skus the real search() returns for a probe under `model`, best first."""
    k = 10 + len(probe.exclude)
    if probe.kind in WITH_PHOTO:
        vectors = (photos or ProbePhotos()).vectors_for(model, probe)
        words = probe.text if probe.kind == "photo_words" else None
        result = search(words, image_vector=vectors, model=model, mode=mode if words else None, k=k)
    elif mode == "text_photo":
        result = search(probe.text, model=model, mode="semantic", signals=["text_photo"], k=k)
    elif mode == HYBRID_WITH_SYNONYMS:
        with synonyms_used(True):
            result = search(probe.text, model=model, mode="hybrid", k=k)
    else:
        result = search(probe.text, model=model, mode=mode, k=k)
    return [hit.product.sku for hit in result.hits]


def can_serve(model: EmbeddingModel, kind: str, mode: str) -> bool:
    return mode != "text_photo" or model.joint


def compare(
    candidate: EmbeddingModel,
    incumbent: EmbeddingModel | None,
    probes: Sequence[Probe],
    progress: Callable[[dict], None] | None = None,
    photos: ProbePhotos | None = None,
) -> list[dict[str, Any]]:
    """Per judged (kind, mode): both models' mean metric, the paired difference and its noise."""
    rows = []
    photos = photos or ProbePhotos()
    judged = JUDGED + (JUDGED_WITH_SYNONYMS if settings.SEARCH_SYNONYMS else ())
    for kind, mode in judged:
        chosen = [p for p in probes if p.kind == kind]
        if not chosen or not can_serve(candidate, kind, mode):
            continue
        against = incumbent if incumbent is not None and can_serve(incumbent, kind, mode) else None
        mine = in_parallel(lambda p: score(run_probe(candidate, p, mode, photos), p), chosen)
        theirs = [] if against is None else in_parallel(lambda p: score(run_probe(against, p, mode, photos), p), chosen)
        row: dict[str, Any] = {
            "kind": kind,
            "mode": mode,
            "metric": chosen[0].metric,
            "queries": len(chosen),
            "candidate": float(np.mean(mine)),
        }
        if against is not None:
            diff = np.asarray(mine) - np.asarray(theirs)
            se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
            noise = max(MIN_NOISE, 2 * se)
            mean = float(diff.mean())
            row.update(
                incumbent=float(np.mean(theirs)),
                diff=mean,
                noise=noise,
                verdict="worse" if mean < -noise else "better" if mean > noise else "same",
            )
        else:
            row.update(incumbent=None, diff=None, noise=None, verdict="new")
        rows.append(row)
        if progress:
            progress({"phase": "gate", "kind": kind, "mode": mode, **{k: row[k] for k in ("candidate", "verdict")}})
    return rows


def decide(rows: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """("activated" | "rejected", why): not worse anywhere beyond noise, better somewhere."""
    worse = [r for r in rows if r["verdict"] == "worse"]
    if worse:
        parts = [f"{r['kind']} ({r['mode']}) by {-r['diff']:.3f} {r['metric']}" for r in worse]
        return "rejected", "not activated: worse on " + "; ".join(parts)
    better = [r for r in rows if r["verdict"] == "better"]
    if not better:
        return "rejected", "not activated: not better than the active model on any query kind beyond noise"
    parts = [f"{r['kind']} ({r['mode']}) +{r['diff']:.3f}" for r in better]
    return "activated", "better on " + "; ".join(parts) + "; no kind worse beyond noise"


def fusion_kinds_of(row: dict[str, Any]) -> list[str]:
    """The fusion kinds (model.fusion keys) a judged row's searches use."""
    if row["kind"] == "photo_words":
        return ["photo", row["mode"], "photo_words"]
    if row["mode"] == HYBRID_WITH_SYNONYMS:
        return ["hybrid"]
    return [row["mode"]] if row["mode"] in FUSION_KINDS else []  # text_photo: one signal, nothing fitted


def fall_back(model: EmbeddingModel, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Reset to the untrained baseline's composition every fitted fusion kind that a row judged
    worse than the active model uses; returns the kinds reset (stored on the model). A fitted
    mix that does not hold on the judging half gives way to what is known to work, while the
    model's measured gains elsewhere (say, its photo signal) still count."""
    reset = []
    for kind in sorted({k for row in rows if row["verdict"] == "worse" for k in fusion_kinds_of(row)}):
        if kind == "photo_words":
            reference = {"rerank": 1.0}
            fitted = {photo_words_method(model): 1.0}
        else:
            reference = baseline_weights(kind, kind_signals(model, kind))
            fitted = fusion_weights(model, kind)
        if fitted != reference:
            model.fusion = {**(model.fusion or {}), kind: reference}
            reset.append(kind)
    if reset:
        model.save(update_fields=["fusion"])
    return reset


def run_gate(model: EmbeddingModel, per_kind: int | None = None) -> dict[str, Any]:
    """Fit the model's fusion, judge it against the active model, record and act on it."""
    started = time.monotonic()
    per_kind = per_kind or settings.GATE_PROBES_PER_KIND
    items = catalogue_items()
    probes = build_probes(items, heldout_skus(model, items), seed=0, per_kind=2 * per_kind)
    fit_half, judge_half = split_halves(probes)
    photos = ProbePhotos()
    incumbent = EmbeddingModel.active()
    # Every probe's words and photo encoded up front, in batches: the candidate's for both
    # halves (it is fitted and judged), the active model's for the half it is judged on.
    with reuse_query_vectors(), without_synonyms():  # the probes' paraphrases are what synonyms invert
        for judged, its_probes in ((model, probes), (incumbent, judge_half)):
            if judged is not None:
                encode_queries_ahead(judged, [p.text for p in its_probes if p.text])
                photos.encode_ahead(judged, its_probes)
        fit = fit_fusion(model, fit_half, photos)
        fit["photo_words"] = fit_photo_words(model, fit_half, photos)
        rows = compare(model, incumbent, judge_half, photos=photos)
        first = decide(rows)
        # Worse somewhere: the fitted mixes behind it fall back to the baseline's, once.
        reset = fall_back(model, rows) if first[0] == "rejected" else []
        if reset:
            rows = compare(model, incumbent, judge_half, photos=photos)
    decision, reason = decide(rows)
    if reset:
        reason += f" (after {', '.join(reset)} fell back to the untrained baseline's composition; first: {first[1]})"
    report = {
        "decision": decision,
        "reason": reason,
        "kinds": rows,
        "fit": fit,
        "fallback": reset,
        "against": incumbent.name if incumbent else None,
        "probes": {kind: sum(p.kind == kind for p in judge_half) for kind in KINDS},
        "fit_probes": {kind: sum(p.kind == kind for p in fit_half) for kind in KINDS},
        "seconds": round(time.monotonic() - started, 1),
        "fusion": {
            **{kind: fusion_weights(model, kind) for kind in FUSION_KINDS},
            "photo_words": {photo_words_method(model): 1.0},
        },
    }
    complete_gate(model, report, keep_refused=settings.GATE_KEEP_REFUSED_VECTORS)
    return report


def on_model_ready(sender: object, model: EmbeddingModel, **_: object) -> None:
    """Receiver of embeddings.registry.model_ready_for_gate."""
    try:
        run_gate(model)
    except Exception as exc:  # a broken gate must not leave the model "evaluating" forever
        logger.exception("activation gate failed for %s", model.name)
        complete_gate(model, {"decision": "rejected", "reason": f"not activated: the gate failed ({exc})", "kinds": []})
