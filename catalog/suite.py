"""The evaluation suite: several catalogues, each searched through the real pipeline.

For each catalogue built by scripts/build_eval_suite.py (catalogue.csv, images/,
queries.jsonl): import it into an empty database, score keyword search and the untrained
baseline, train a joint model per text tower with the documented defaults through the
same gated path as the site (train -> re-embed -> fit fusion -> gate), and score each
trained model whatever the gate decided. Every score comes from ``search()``.

Query kinds (queries.jsonl "kind"): keyword, paraphrase, photo, unseen_photo, photo_words
(a photo plus a narrowing word, searched in semantic and hybrid mode); "nodesc" re-runs the
keyword and the paraphrase wordings (scored apart) against the photos alone (text->photo,
the product texts hidden), which only a joint model can answer. ``text_weights`` also
scores the photo_words queries for each of a grid of text_weight values
(text_weight_grid), the figures SEARCH_TEXT_WEIGHT is chosen from (choose_text_weight).
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection
from django.utils import timezone
from PIL import Image

from catalog.ingest import run_import
from catalog.models import (
    ImportJob,
    Product,
    ProductPopularity,
    QueryImage,
    SearchClick,
    SearchLog,
    Synonym,
    SynonymLookup,
)
from catalog.popularity import refresh
from catalog.search import QueryVectors, image_query_vectors, reuse_query_vectors, search
from ml.metrics import score_ranking
from embeddings.models import EmbeddingModel, TrainingJob
from embeddings.registry import ensure_active_model, retire
from embeddings.train_jobs import run_training
from ml.transforms import open_image

logger = logging.getLogger(__name__)

METRIC = {
    "keyword": "map@10",
    "paraphrase": "map@10",
    "nodesc": "map@10",
    "photo": "r@1",
    "unseen_photo": "map@10",
    "photo_words": "map@10",
}
KIND_ORDER = ("keyword", "paraphrase", "nodesc", "photo", "unseen_photo", "photo_words")
PHOTO_WORDS_MODES = ("semantic", "hybrid")
# A grid weight is acceptable when no catalogue x model x mode scores more than this below
# its own best weight; the default is the acceptable weight with the best mean.
TEXT_WEIGHT_TOLERANCE = 0.05
TEXT_TOWERS = ("gru", "minilm")


@dataclass
class SuiteQuery:
    kind: str
    relevant: frozenset[str]
    text: str = ""
    image: Path | None = None


@dataclass
class CatalogueResult:
    name: str
    products: int
    rows: list[dict[str, Any]] = field(default_factory=list)  # kind, mode, metric, method -> score
    gates: dict[str, dict] = field(default_factory=dict)  # text tower -> gate report
    grid: list[dict[str, Any]] = field(default_factory=list)  # method, mode, text_weight -> photo_words score
    active: str = ""  # the model serving search at the end
    seconds: float = 0.0
    popularity: list[dict[str, Any]] = field(default_factory=list)  # kind, mode, metric, weight -> score


def load_suite_queries(path: Path) -> list[SuiteQuery]:
    out = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        item = json.loads(line)
        kind, relevant = item.get("kind"), frozenset(map(str, item.get("relevant") or ()))
        if kind not in METRIC or not relevant:
            raise ValueError(f"{path.name} line {number}: needs a known 'kind' and a non-empty 'relevant'")
        image = (path.parent / item["image"]).resolve() if item.get("image") else None
        out.append(SuiteQuery(kind, relevant, str(item.get("query") or ""), image))
    return out


def wipe() -> None:
    """Empty the catalogue and the model registry (the suite runs in its own data dir)."""
    for model in EmbeddingModel.objects.all():
        retire(model)
    EmbeddingModel.objects.all().delete()
    TrainingJob.objects.all().delete()
    ImportJob.objects.all().delete()
    QueryImage.objects.all().delete()
    Product.objects.all().delete()
    # WordNet synonyms are made from the catalogue's words: the next catalogue makes its own,
    # from its own vocabulary. The vocabulary only grows (migration 0006), so it is emptied
    # too: the words of an earlier catalogue would get synonyms of their own and take the
    # places of this catalogue's words among a broad term's MAX_WORDS_PER_TERM (fashion's
    # paraphrases by keyword: 0.158 after the other two catalogues, 0.203 in a new data dir).
    Synonym.objects.exclude(source=Synonym.Source.ADMIN).delete()
    SynonymLookup.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM catalog_searchword")


def import_catalogue(csv_path: Path) -> int:
    ensure_active_model()
    job = ImportJob.objects.create(source_name=csv_path.name, csv_path=str(csv_path.resolve()))
    job = run_import(job)
    if job.status == ImportJob.Status.FAILED:
        raise RuntimeError(f"{csv_path}: {job.error_message}")
    return Product.objects.count()


def _ranked(model: EmbeddingModel | None, query: SuiteQuery, method: str, image: Image.Image | None) -> list[str]:
    if query.image is not None and query.text:  # photo + words, in the mode `method`
        result = search(query.text, image=image, model=model, mode=method, k=10)
    elif query.image is not None:
        result = search(image=image, model=model, k=10)
    elif method == "keyword":
        result = search(query.text, mode="keyword", k=10)
    elif method.startswith("text_photo"):
        result = search(query.text, model=model, mode="semantic", signals=["text_photo"], k=10)
    else:
        result = search(query.text, model=model, mode=method, k=10)
    return [hit.product.sku for hit in result.hits]


def score_model(model: EmbeddingModel | None, queries: list[SuiteQuery], label: str) -> list[dict[str, Any]]:
    """Rows (kind, mode, metric, method label, score, queries) for one model (None = keyword)."""
    images: dict[Path | None, Image.Image] = {
        q.image: open_image(q.image.read_bytes()) for q in queries if q.image is not None
    }
    plans: list[tuple[str, str, list[SuiteQuery]]] = []
    text = {kind: [q for q in queries if q.kind == kind] for kind in ("keyword", "paraphrase")}
    if model is None:
        plans += [(kind, "keyword", qs) for kind, qs in text.items()]
    else:
        for kind, qs in text.items():
            plans += [(kind, "semantic", qs), (kind, "hybrid", qs)]
        if model.joint:
            # Words against the photos alone, keyword and paraphrase wordings apart: they
            # measure different things (the catalogue's words vs words it never uses).
            plans += [("nodesc", f"text_photo ({kind})", qs) for kind, qs in text.items()]
        plans += [(kind, "photo", [q for q in queries if q.kind == kind]) for kind in ("photo", "unseen_photo")]
        plans += [("photo_words", mode, [q for q in queries if q.kind == "photo_words"]) for mode in PHOTO_WORDS_MODES]
    rows = []
    for kind, mode, qs in plans:
        if not qs:
            continue
        metric = METRIC[kind]
        values = [score_ranking(_ranked(model, q, mode, images.get(q.image)), q.relevant, metric) for q in qs]
        rows.append(
            {
                "kind": kind,
                "mode": mode,
                "metric": metric,
                "method": label,
                "score": float(np.mean(values)),
                "queries": len(qs),
            }
        )
    return rows


# --- the popularity boost, measured on a simulated click history --------------------------

POPULARITY_MODES = {"keyword": "hybrid", "paraphrase": "hybrid", "photo": "photo", "unseen_photo": "photo"}
SHOPPERS = 3  # shoppers who run each history query
NOISE_CLICK = 0.15  # chance a shopper opens a result that is not relevant, once looked at


def _search_once(
    model: EmbeddingModel, query: SuiteQuery, photo: dict[Path, QueryVectors], weight: float
) -> list[Product]:
    if query.image is not None:
        result = search(image_vector=photo[query.image], model=model, k=10, popularity=weight)
    else:
        result = search(query.text, model=model, mode=POPULARITY_MODES[query.kind], k=10, popularity=weight)
    return [hit.product for hit in result.hits]


def simulate_clicks(
    model: EmbeddingModel, history: list[SuiteQuery], photo: dict[Path, QueryVectors], rng: random.Random
) -> int:
    """A search log from `history`: each query run by SHOPPERS shoppers (one search each, on
    one of the last 28 days, popularity off), who look at result r with chance 1/sqrt(r)
    and open what they look at: a relevant result with chance 0.8, another with NOISE_CLICK.
    Returns the clicks logged; then the popularity aggregates are rebuilt from them."""
    clicks = []
    now = timezone.now()
    for query in history:
        shown = _search_once(model, query, photo, 0.0)
        for _ in range(SHOPPERS):
            at = now - timedelta(days=rng.uniform(0, 28))
            log = SearchLog.objects.create(
                id=uuid.uuid4(),
                created_at=at,
                kind="photo" if query.image else "text",
                text=query.text,
                mode=POPULARITY_MODES[query.kind],
                results=len(shown),
                took_ms=0.0,
                source="api",
                visitor=f"{rng.getrandbits(64):016x}",
            )
            for rank, product in enumerate(shown, start=1):
                chance = 0.8 if product.sku in query.relevant else NOISE_CLICK
                if rng.random() < rank**-0.5 and rng.random() < chance:
                    clicks.append(SearchClick(search=log, product=product, rank=rank))
    SearchClick.objects.bulk_create(clicks)
    with connection.cursor() as cursor:  # a click happens when its search does (not now)
        cursor.execute(
            "UPDATE catalog_searchclick c SET created_at = s.created_at FROM catalog_searchlog s"
            " WHERE s.id = c.search_id"
        )
    refresh()
    return len(clicks)


def popularity_rows(
    model: EmbeddingModel, queries: list[SuiteQuery], weights: list[float], seed: int = 0
) -> list[dict[str, Any]]:
    """Each query kind split in two halves at random; the shoppers of one half click (a
    simulated history, simulate_clicks), the other half is scored with the popularity
    boost at each weight; then the halves swap, so every query is scored once per weight
    by a history it took no part in. Rows: kind, mode, metric, weight, score, queries, clicks."""
    rng = random.Random(seed)
    usable = [q for q in queries if q.kind in POPULARITY_MODES]
    photo = {
        q.image: image_query_vectors(model, open_image(q.image.read_bytes())) for q in usable if q.image is not None
    }
    halves: tuple[list[SuiteQuery], list[SuiteQuery]] = ([], [])
    for kind in POPULARITY_MODES:
        of_kind = [q for q in usable if q.kind == kind]
        rng.shuffle(of_kind)
        halves[0].extend(of_kind[: len(of_kind) // 2])
        halves[1].extend(of_kind[len(of_kind) // 2 :])
    scores: dict[tuple[str, float], list[float]] = {}
    clicks = 0
    for history, scored in (halves, halves[::-1]):
        SearchLog.objects.all().delete()
        clicks += simulate_clicks(model, history, photo, rng)
        with reuse_query_vectors():
            for query in scored:
                for weight in weights:
                    ranked = [p.sku for p in _search_once(model, query, photo, weight)]
                    scores.setdefault((query.kind, weight), []).append(
                        score_ranking(ranked, query.relevant, METRIC[query.kind])
                    )
    SearchLog.objects.all().delete()
    ProductPopularity.objects.all().delete()
    return [
        {
            "kind": kind,
            "mode": POPULARITY_MODES[kind],
            "metric": METRIC[kind],
            "weight": weight,
            "score": float(np.mean(values)),
            "queries": len(values),
            "clicks": clicks,
        }
        for (kind, weight), values in scores.items()
    ]


def text_weight_grid(
    model: EmbeddingModel, queries: list[SuiteQuery], label: str, weights: Sequence[float]
) -> list[dict[str, Any]]:
    """Rows (method, mode, text_weight, score, queries): the photo_words queries through search()
    for each text_weight of the grid, in each of PHOTO_WORDS_MODES."""
    chosen = [q for q in queries if q.kind == "photo_words"]
    scores: dict[tuple[str, float], list[float]] = {(m, w): [] for m in PHOTO_WORDS_MODES for w in weights}
    for q in chosen:
        assert q.image is not None
        vectors = image_query_vectors(model, open_image(q.image.read_bytes()))  # once per query
        with reuse_query_vectors():  # and the words once
            for mode in PHOTO_WORDS_MODES:
                for weight in weights:
                    result = search(q.text, image_vector=vectors, model=model, mode=mode, k=10, text_weight=weight)
                    ranked = [hit.product.sku for hit in result.hits]
                    scores[(mode, weight)].append(score_ranking(ranked, q.relevant, METRIC["photo_words"]))
    return [
        {"method": label, "mode": mode, "text_weight": weight, "score": float(np.mean(values)), "queries": len(values)}
        for (mode, weight), values in scores.items()
        if values
    ]


def choose_text_weight(results: list[CatalogueResult], tolerance: float = TEXT_WEIGHT_TOLERANCE) -> tuple[float, str]:
    """The grid weight with the best mean over every catalogue x model x mode among those where
    none of them is more than `tolerance` below its own best; the rule's outcome in words."""
    cells: dict[tuple[str, str, str], dict[float, float]] = {}
    for r in results:
        for row in r.grid:
            cells.setdefault((r.name, row["method"], row["mode"]), {})[row["text_weight"]] = row["score"]
    if not cells:
        raise ValueError("no grid scores: run with text_weights")
    weights = sorted(set.intersection(*(set(c) for c in cells.values())))
    mean = {w: float(np.mean([c[w] for c in cells.values()])) for w in weights}
    worst = {w: max(max(c.values()) - c[w] for c in cells.values()) for w in weights}
    acceptable = [w for w in weights if worst[w] <= tolerance]
    pool = acceptable or weights
    best = max(pool, key=lambda w: (mean[w], -abs(w - 0.5)))
    why = (
        f"text_weight {best:g}: mean MAP@10 {mean[best]:.3f} over {len(cells)} catalogue x model x mode cells, "
        f"worst cell {worst[best]:.3f} below its own best"
    )
    if not acceptable:
        why += f" (no weight kept every cell within {tolerance}: best mean taken)"
    return best, why


def grid_table(results: list[CatalogueResult]) -> str:
    """The photo_words grid: one row per catalogue x model x mode, one column per text_weight."""
    weights = sorted({row["text_weight"] for r in results for row in r.grid})
    header = ["catalogue", "model", "mode", "queries", *[f"{w:g}" for w in weights]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    totals: dict[float, list[float]] = {w: [] for w in weights}
    row: dict[str, Any] | None
    for r in results:
        cells: dict[tuple[str, str], dict[float, dict]] = {}
        for row in r.grid:
            cells.setdefault((row["method"], row["mode"]), {})[row["text_weight"]] = row
        for (method, mode), by_weight in cells.items():
            best = max(row["score"] for row in by_weight.values())
            n = next(iter(by_weight.values()))["queries"]
            shown = []
            for w in weights:
                row = by_weight.get(w)
                if row is not None:
                    totals[w].append(row["score"])
                shown.append(
                    "—"
                    if row is None
                    else (f"**{row['score']:.3f}**" if row["score"] == best else f"{row['score']:.3f}")
                )
            lines.append(f"| {r.name} | {method} | {mode} | {n} | " + " | ".join(shown) + " |")
    lines.append("| **mean** | | | | " + " | ".join(f"{np.mean(v):.3f}" if v else "—" for v in totals.values()) + " |")
    return "\n".join(lines)


def first_products(folder: Path, limit: int) -> Path:
    """A copy of the catalogue's first `limit` rows beside it (so image paths still resolve)."""
    out = folder / f"catalogue-first{limit}.csv"
    with (
        (folder / "catalogue.csv").open(newline="", encoding="utf-8") as src,
        out.open("w", newline="", encoding="utf-8") as dst,
    ):
        reader, writer = csv.reader(src), csv.writer(dst)
        for i, row in enumerate(reader):
            if i > limit:
                break
            writer.writerow(row)
    return out


def run_catalogue(
    folder: Path,
    epochs: int | None = None,
    towers: tuple[str, ...] = TEXT_TOWERS,
    echo: Callable[[str], None] = print,
    limit: int | None = None,
    popularity: list[float] | None = None,
    text_weights: Sequence[float] = (),
) -> CatalogueResult:
    """``limit``: only the first products (a quicker, smaller run; queries keep the relevant
    products that remain, and a photo query whose product is gone is dropped).
    ``popularity``: also measure the popularity boost at these weights (popularity_rows)
    with the model serving at the end."""
    started = time.monotonic()
    wipe()
    n = import_catalogue(first_products(folder, limit) if limit else folder / "catalogue.csv")
    queries = load_suite_queries(folder / "queries.jsonl")
    if limit:
        kept = set(Product.objects.values_list("sku", flat=True))
        queries = [SuiteQuery(q.kind, q.relevant & kept, q.text, q.image) for q in queries if q.relevant & kept]
    result = CatalogueResult(folder.name, n)
    echo(f"[{folder.name}] {n} products, {len(queries)} queries; scoring keyword and baseline")
    result.rows += score_model(None, queries, "keyword")
    result.rows += score_model(EmbeddingModel.active(), queries, "baseline")
    if text_weights:
        baseline = EmbeddingModel.active()
        assert baseline is not None  # the catalogue's import registered and activated it
        result.grid += text_weight_grid(baseline, queries, "baseline", text_weights)
    for tower in towers:
        echo(f"[{folder.name}] training the {tower} model (gated)")
        params: dict[str, Any] = {"text": tower, "name": f"suite-{folder.name}-{tower}"}
        if epochs:
            params["epochs"] = epochs
        job = TrainingJob.objects.create(params=params, activate=True)
        model = run_training(job)
        model.refresh_from_db()
        gate = dict(model.gate or {})
        result.gates[tower] = gate
        echo(f"[{folder.name}] {tower}: gate {gate.get('decision')}: {gate.get('reason')}")
        # A refused model keeps its vectors here (GATE_KEEP_REFUSED_VECTORS): score it too,
        # then drop them as the site would have.
        result.rows += score_model(model, queries, tower)
        if text_weights:
            result.grid += text_weight_grid(model, queries, tower, text_weights)
        if model.status != EmbeddingModel.Status.ACTIVE:
            retire(model)
    result.active = (EmbeddingModel.active() or EmbeddingModel()).name
    if popularity:
        echo(f"[{folder.name}] popularity boost at weights {', '.join(map(str, popularity))} ({result.active})")
        result.popularity = popularity_rows(EmbeddingModel.active(), queries, popularity)  # type: ignore[arg-type]
    result.seconds = time.monotonic() - started
    return result


def table(results: list[CatalogueResult]) -> str:
    """One markdown table: per catalogue and query kind, every method's score and the gate."""
    header = ["catalogue", "query kind", "metric", "mode", "keyword", "baseline", "trained GRU", "trained MiniLM"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells: dict[tuple[str, str], dict[str, float]] = {}
        for row in r.rows:
            mode = "photo" if row["mode"] == "photo" else row["mode"]
            key = (row["kind"], mode)
            cells.setdefault(key, {})[row["method"]] = row["score"]
            if row["method"] == "keyword":
                for m in ("semantic", "hybrid"):
                    cells.setdefault((row["kind"], m), {})["keyword"] = row["score"]
        keys = sorted(
            (k for k in cells if k[1] != "keyword"),
            key=lambda k: (
                KIND_ORDER.index(k[0]),
                ("semantic", "hybrid", "text_photo (keyword)", "text_photo (paraphrase)", "photo").index(k[1]),
            ),
        )
        for kind, mode in keys:
            values = cells[(kind, mode)]
            fmt = [f"{values[m]:.3f}" if m in values else "—" for m in ("keyword", "baseline", "gru", "minilm")]
            lines.append(f"| {r.name} | {kind} | {METRIC[kind]} | {mode} | " + " | ".join(fmt) + " |")
    lines.append("")
    lines.append("| catalogue | products | GRU gate | MiniLM gate | active at the end | minutes |")
    lines.append("|---|---|---|---|---|---|")
    for r in results:
        gates = [_gate_cell(r.gates.get(t)) for t in TEXT_TOWERS]
        lines.append(f"| {r.name} | {r.products} | {gates[0]} | {gates[1]} | {r.active} | {r.seconds / 60:.1f} |")
    return "\n".join(lines)


def popularity_table(results: list[CatalogueResult]) -> str:
    """Per catalogue and query kind, the held-out score at each popularity weight; a last row
    per weight: the mean over every catalogue and kind (what picks the default)."""
    weights = sorted({row["weight"] for r in results for row in r.popularity})
    if not weights:
        return ""
    header = ["catalogue", "query kind", "metric", "mode", "queries"] + [f"weight {w:g}" for w in weights]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    means: dict[float, list[float]] = {w: [] for w in weights}
    for r in results:
        cells: dict[str, dict[float, dict]] = {}
        for row in r.popularity:
            cells.setdefault(row["kind"], {})[row["weight"]] = row
        for kind in sorted(cells, key=KIND_ORDER.index):
            first = next(iter(cells[kind].values()))
            for w in weights:
                means[w].append(cells[kind][w]["score"])
            lines.append(
                f"| {r.name} | {kind} | {first['metric']} | {first['mode']} | {first['queries']} | "
                + " | ".join(f"{cells[kind][w]['score']:.3f}" for w in weights)
                + " |"
            )
    lines.append(
        "| **all** | mean of the rows above | | | | "
        + " | ".join(f"**{np.mean(means[w]):.3f}**" for w in weights)
        + " |"
    )
    clicks = ", ".join(f"{r.name} {r.popularity[0]['clicks']}" for r in results if r.popularity)
    lines.append("")
    lines.append(f"Simulated clicks (both halves): {clicks}.")
    return "\n".join(lines)


def _gate_cell(gate: dict | None) -> str:
    if not gate:
        return "—"
    return f"**{gate.get('decision')}**: {gate.get('reason', '').replace('|', '/')}"


def default_suite_dir() -> Path:
    return Path(settings.BASE_DIR) / "var" / "evalsuite"
