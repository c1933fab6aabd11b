"""The evaluation suite: several catalogues, each searched through the real pipeline.

For each catalogue built by scripts/build_eval_suite.py (catalogue.csv, images/,
queries.jsonl): import it into an empty database, score keyword search and the untrained
baseline, train a joint model per text tower with the documented defaults through the
same gated path as the site (train -> re-embed -> fit fusion -> gate), and score each
trained model whatever the gate decided. Every score comes from ``search()``.

Query kinds (queries.jsonl "kind"): keyword, paraphrase, photo, unseen_photo; "nodesc"
re-runs the keyword and the paraphrase wordings (scored apart) against the photos alone
(text->photo, the product texts hidden), which only a joint model can answer.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from PIL import Image

from catalog.ingest import run_import
from catalog.models import ImportJob, Product, QueryImage
from catalog.search import search
from embeddings.metrics import score_ranking
from embeddings.models import EmbeddingModel, TrainingJob
from embeddings.registry import ensure_active_model, retire
from embeddings.train_jobs import run_training
from embeddings.transforms import open_image

logger = logging.getLogger(__name__)

METRIC = {"keyword": "map@10", "paraphrase": "map@10", "nodesc": "map@10", "photo": "r@1", "unseen_photo": "map@10"}
KIND_ORDER = ("keyword", "paraphrase", "nodesc", "photo", "unseen_photo")
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
    active: str = ""  # the model serving search at the end
    seconds: float = 0.0


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


def import_catalogue(csv_path: Path) -> int:
    ensure_active_model()
    job = ImportJob.objects.create(source_name=csv_path.name, csv_path=str(csv_path.resolve()))
    job = run_import(job)
    if job.status == ImportJob.Status.FAILED:
        raise RuntimeError(f"{csv_path}: {job.error_message}")
    return Product.objects.count()


def _ranked(model: EmbeddingModel | None, query: SuiteQuery, method: str, image: Image.Image | None) -> list[str]:
    if query.image is not None:
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
    images = {q.image: open_image(q.image.read_bytes()) for q in queries if q.image is not None}
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
    rows = []
    for kind, mode, qs in plans:
        if not qs:
            continue
        metric = METRIC[kind]
        values = [score_ranking(_ranked(model, q, mode, images.get(q.image)), q.relevant, metric) for q in qs]
        rows.append({"kind": kind, "mode": mode, "metric": metric, "method": label,
                     "score": float(np.mean(values)), "queries": len(qs)})
    return rows


def first_products(folder: Path, limit: int) -> Path:
    """A copy of the catalogue's first `limit` rows beside it (so image paths still resolve)."""
    import csv

    out = folder / f"catalogue-first{limit}.csv"
    with (folder / "catalogue.csv").open(newline="", encoding="utf-8") as src, out.open("w", newline="", encoding="utf-8") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        for i, row in enumerate(reader):
            if i > limit:
                break
            writer.writerow(row)
    return out


def run_catalogue(
    folder: Path, epochs: int | None = None, towers: tuple[str, ...] = TEXT_TOWERS,
    echo: Callable[[str], None] = print, limit: int | None = None,
) -> CatalogueResult:
    """``limit``: only the first products (a quicker, smaller run; queries keep the relevant
    products that remain, and a photo query whose product is gone is dropped)."""
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
        if model.status != EmbeddingModel.Status.ACTIVE:
            retire(model)
    result.active = (EmbeddingModel.active() or EmbeddingModel()).name
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
            key=lambda k: (KIND_ORDER.index(k[0]), ("semantic", "hybrid", "text_photo (keyword)", "text_photo (paraphrase)", "photo").index(k[1])),
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


def _gate_cell(gate: dict | None) -> str:
    if not gate:
        return "—"
    return f"**{gate.get('decision')}**: {gate.get('reason', '').replace('|', '/')}"


def default_suite_dir() -> Path:
    return Path(settings.BASE_DIR) / "var" / "evalsuite"
