"""Public, read-only pages about the embedding models: registry, evaluation, catalogue map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from django.conf import settings
from django.db.models import Count, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from embeddings.models import EmbeddingModel, EvaluationRun, ProductVector, TrainingJob, fallback_note, product_model
from ml import maps

METRIC_COLUMNS = ("R@1", "R@5", "R@10", "MRR@10", "mAP@10", "P@10")
TASK_ORDER = ("text→image", "image→image")
# Maps of at most this many products are computed inside the request (a few seconds);
# larger ones in a background thread while the page polls. On the 2,500-product demo
# t-SNE takes well over 30 s on two cores, so it is never done inline there.
SYNC_MAP_LIMIT = 400


def _current_vectors() -> QuerySet[ProductVector]:
    """Vectors computed from each product's current content (stale ones don't count)."""
    return ProductVector.current()


def _requested_backbone(model: EmbeddingModel) -> str:
    params = (model.training_data or {}).get("params") or {}
    return str(params.get("backbone") or (model.spec or {}).get("backbone") or "")


def _training_metrics(metrics: dict) -> dict:
    """The training metrics as a small table: direction x (R@1, R@5, R@10, MRR@10, mAP@10)."""
    wanted = [
        ("recall@1", "R@1"),
        ("recall@5", "R@5"),
        ("recall@10", "R@10"),
        ("mrr@10", "MRR@10"),
        ("map@10", "mAP@10"),
    ]
    rows = []
    for prefix, label in (("t2i", "text→image"), ("i2t", "image→text")):
        values = [metrics.get(f"{prefix}_{key}") for key, _ in wanted]
        if any(v is not None for v in values):
            rows.append({"label": label, "values": values, "queries": metrics.get(f"{prefix}_queries")})
    return {
        "columns": [label for _, label in wanted],
        "rows": rows,
        "epoch": metrics.get("epoch"),
        "val": bool(metrics.get("eval_split_is_val")),
    }


@require_GET
def registry(request: HttpRequest) -> HttpResponse:
    products = product_model().objects.count()
    done = dict(_current_vectors().values_list("model").annotate(n=Count("id")).values_list("model", "n"))
    rows = []
    for model in EmbeddingModel.objects.all():
        requested = _requested_backbone(model)
        fallback = model.notes or fallback_note(requested, model.backbone)
        vectors = done.get(model.pk, 0)
        rows.append(
            {
                "model": model,
                "requested_backbone": requested,
                "fallback": fallback,
                "vectors": vectors,
                "percent": round(100 * vectors / products) if products else 0,
                "training": model.training_data or {},
                "params": (model.training_data or {}).get("params") or {},
                "metrics": _training_metrics(model.metrics or {}),
                "has_curve": bool(model.curve),
            }
        )
    training = [
        {
            "job": job,
            "percent": _percent(job.progress),
            "phase": TRAINING_PHASES.get(job.progress.get("phase"), "starting"),
        }
        for job in TrainingJob.objects.filter(status__in=[TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING])
    ]
    return render(request, "embeddings/registry.html", {"rows": rows, "products": products, "training": training})


TRAINING_PHASES = {
    "features": "photo features",
    "distill": "word meaning (distilling MiniLM)",
    "train": "training the towers",
}


def _percent(progress: dict) -> int:
    """How far the current phase of a training is (features, distill, train), 0-100."""
    done, total = progress.get("done") or 0, progress.get("total") or 0
    return min(100, round(100 * done / total)) if total else 0


@require_GET
def curve(request: HttpRequest, pk: int) -> FileResponse:
    """A model's loss/recall plot; only files under MODELS_DIR are ever served."""
    model = get_object_or_404(EmbeddingModel, pk=pk)
    if not model.curve:
        raise Http404("no curve for this model")
    root = Path(settings.MODELS_DIR).resolve()
    path = Path(model.curve).resolve()
    if not path.is_relative_to(root) or not path.is_file() or path.suffix.lower() != ".png":
        raise Http404("curve not found")
    return FileResponse(path.open("rb"), content_type="image/png")


def _method_info(method: str, model_kind: str | None) -> tuple[str, str]:
    """(family, explanation) of an evaluation row's method label."""
    if method.startswith("keyword"):
        return "baseline", "Postgres full-text search (tsvector ranking over title, description and category)."
    if method.startswith("hybrid"):
        return (
            "trained" if model_kind == "joint" else "baseline",
            "Reciprocal-rank fusion of this model's semantic list with the keyword list.",
        )
    if "MiniLM" in method:
        return "baseline", "Query embedded with pretrained MiniLM, matched against product texts (no photos)."
    if method.startswith("text→photo"):
        return "trained", "Query words embedded by the trained text tower, matched against product photos only."
    if method.startswith("semantic"):
        return "trained", (
            "What search does: the query's match against product photos fused (RRF) with its match "
            "against product texts, both in the trained joint space."
        )
    if method.startswith("photo") and "pretrained" in method:
        return "baseline", "Untrained pretrained-backbone features of the query photo vs. the catalogue photos."
    if method.startswith("photo"):
        return "trained", "The trained image tower: query photo vs. catalogue photos in the learned space."
    return ("trained" if model_kind == "joint" else "baseline"), ""


def _task_tables(rows: list[dict]) -> list[dict]:
    kinds = dict(EmbeddingModel.objects.values_list("name", "kind"))
    tasks = sorted({r["task"] for r in rows}, key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else 99, t))
    tables = []
    for task in tasks:
        task_rows = [r for r in rows if r["task"] == task]
        best = {c: max((r.get(c, 0.0) for r in task_rows), default=0.0) for c in METRIC_COLUMNS}
        body = []
        for r in task_rows:
            family, explanation = _method_info(r["method"], kinds.get(r["model"]))
            cells = [{"value": r.get(c, 0.0), "best": r.get(c, 0.0) == best[c] and best[c] > 0} for c in METRIC_COLUMNS]
            body.append(
                {
                    "method": r["method"],
                    "model": r["model"],
                    "family": family,
                    "explanation": explanation,
                    "queries": r.get("queries"),
                    "cells": cells,
                    "map": r.get("mAP@10", 0.0),
                }
            )
        tables.append({"task": task, "rows": body, "chart": _bar_chart(body), "headline": _headline(task, body)})
    return tables


def _bar_chart(rows: list[dict]) -> dict:
    """Geometry of a horizontal SVG bar chart of mAP@10, one bar per row."""
    label_w, bar_w, row_h = 420, 360, 26
    top = max((r["map"] for r in rows), default=0.0) or 1.0
    scale = 1.0 if top <= 1.0 else top
    bars = []
    for i, r in enumerate(rows):
        label = r["method"] if r["model"] == "-" else f"{r['model']} · {r['method']}"
        bars.append(
            {
                "y": i * row_h,
                "text_y": i * row_h + 17,
                "label": label if len(label) <= 62 else label[:61] + "…",
                "width": round(bar_w * r["map"] / scale, 1),
                "value": r["map"],
                "family": r["family"],
                "value_x": label_w + round(bar_w * r["map"] / scale, 1) + 6,
            }
        )
    return {
        "bars": bars,
        "label_w": label_w,
        "width": label_w + bar_w + 60,
        "height": len(rows) * row_h + 4,
        "bar_h": row_h - 8,
    }


def _headline(task: str, rows: list[dict]) -> str:
    """One sentence: the best trained method against the baseline it must beat."""
    trained = [r for r in rows if r["family"] == "trained"]
    if not trained:
        return ""
    best = max(trained, key=lambda r: r["map"])
    if task == "text→image":
        reference = next((r for r in rows if r["method"].startswith("keyword")), None)
    else:
        reference = next((r for r in rows if r["family"] == "baseline"), None)
    if reference is None:
        return ""
    verb = "beats" if best["map"] > reference["map"] else "does not beat"
    return (
        f"Best trained model: {best['model']} · {best['method']} — {verb} {reference['method']} "
        f"on mAP@10: {best['map']:.3f} vs {reference['map']:.3f}."
    )


@require_GET
def evaluation(request: HttpRequest) -> HttpResponse:
    runs = list(
        EvaluationRun.objects.only("pk", "created_at", "queries_file", "n_text_queries", "n_image_queries")[:50]
    )
    run = None
    wanted = request.GET.get("run", "")
    if wanted.isdigit():
        run = get_object_or_404(EvaluationRun, pk=int(wanted))
    elif runs:
        run = EvaluationRun.objects.get(pk=runs[0].pk)
    tables = _task_tables(run.results.get("rows", [])) if run else []
    return render(
        request,
        "embeddings/evaluation.html",
        {
            "run": run,
            "runs": runs,
            "tables": tables,
            "columns": METRIC_COLUMNS,
            "products": run.results.get("products") if run else None,
        },
    )


def _map_model(request: HttpRequest) -> EmbeddingModel | None:
    wanted = request.GET.get("model", "")
    if wanted.isdigit():
        return get_object_or_404(EmbeddingModel, pk=int(wanted))
    return EmbeddingModel.active()


def _map_rows(model: EmbeddingModel) -> QuerySet[ProductVector]:
    return _current_vectors().filter(model=model).order_by("product_id")


def _load_map_input(model: EmbeddingModel) -> maps.MapInput:
    rows = list(
        _map_rows(model).values_list(
            "product_id",
            "content_hash",
            "image_vec",
            "text_vec",
            "product__sku",
            "product__title",
            "product__category",
            "product__thumbnail",
            "product__image",
        )
    )
    Product = product_model()
    storage = Product._meta.get_field("image").storage
    items, hashes, image, text = [], [], [], []
    for pid, chash, ivec, tvec, sku, title, category, thumb, photo in rows:
        items.append(
            {
                "id": pid,
                "sku": sku,
                "title": title,
                "category": category,
                "url": Product(sku=sku).get_absolute_url(),
                "thumb": storage.url(thumb or photo) if (thumb or photo) else "",
            }
        )
        hashes.append(chash)
        image.append(np.asarray(ivec, dtype=np.float32))
        text.append(np.asarray(tvec, dtype=np.float32))
    dims = (model.image_dim, model.text_dim)
    return maps.MapInput(
        model_id=model.pk,
        joint=model.joint,
        items=items,
        content_hashes=hashes,
        image_vecs=np.stack(image) if image else np.zeros((0, dims[0]), np.float32),
        text_vecs=np.stack(text) if text else np.zeros((0, dims[1]), np.float32),
    )


@require_GET
def map_page(request: HttpRequest) -> HttpResponse:
    model = _map_model(request)
    mapped = list(EmbeddingModel.objects.filter(vectors__isnull=False).distinct())
    return render(
        request,
        "embeddings/map.html",
        {
            "model": model,
            "mapped_models": mapped,
            "vectors": _map_rows(model).count() if model else 0,
        },
    )


@require_GET
def map_json(request: HttpRequest) -> JsonResponse:
    model = _map_model(request)
    if model is None:
        return JsonResponse({"status": "empty", "error": "no active model"}, status=404)
    hashes = [f"{pid}:{h}" for pid, h in _map_rows(model).values_list("product_id", "content_hash")]
    if not hashes:
        return JsonResponse({"status": "empty", "error": f"{model.name} has no vectors yet"}, status=404)
    key = maps.cache_key(model.pk, hashes)
    result = maps.get_or_start(
        Path(settings.DATA_DIR) / "maps",
        key,
        lambda: _load_map_input(model),
        background=len(hashes) > SYNC_MAP_LIMIT,
    )
    result = {
        **result,
        "model": {
            "id": model.pk,
            "name": model.name,
            "kind": model.kind,
            "image_dim": model.image_dim,
            "text_dim": model.text_dim,
        },
    }
    status = {"computing": 202, "failed": 500}.get(result["status"], 200)
    return JsonResponse(result, status=status, json_dumps_params={"ensure_ascii": False})
