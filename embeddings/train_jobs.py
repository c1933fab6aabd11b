"""Training from the catalogue: export rows to records, train, register the model.

Shared by `manage.py train_embeddings` and the staff page's Celery task.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
import numpy as np
from django.conf import settings
from django.utils import timezone

from embeddings.dispatch import start_activation
from embeddings.models import EmbeddingModel, ProductVector, TrainingJob, fallback_note, product_model
from embeddings.registry import encoder_for, register_checkpoint
from ml.config import ImageTowerCfg, TextTowerCfg, TrainCfg
from ml.data import KnownFeatures, Record

# The documented training defaults: the ones TrainCfg holds, plus the towers' choice.
DEFAULTS = {
    "backbone": None,  # settings.EMBEDDINGS_IMAGE_BACKBONE
    "text": "gru",
    "dim": None,  # settings.EMBED_DIM
    "epochs": TrainCfg.epochs,
    "mining": TrainCfg.mining,
    "margin": TrainCfg.margin,
    "seed": TrainCfg.seed,
}


def catalogue_records() -> list[Record]:
    return [
        Record(
            sku=p.sku,
            title=p.title,
            description=p.description,
            category=p.category,
            price=float(p.price),
            image_path=Path(p.image.path),
        )
        for p in product_model().objects.order_by("sku").iterator(chunk_size=2000)
    ]


def active_features() -> KnownFeatures | None:
    """The active model's stored backbone features, for training to reuse as its plain view
    (a first training after the demo import skips a third of its backbone passes); read only
    for the products the feature cache lacks. None when the active model has none."""
    model = EmbeddingModel.active()
    if model is None:
        return None
    if model.joint and not model.image_feat_dim:
        return None
    column = "image_feat" if model.joint else "image_vec"

    def fetch(skus: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(skus), 2000):
            rows = ProductVector.current(model).filter(product__sku__in=skus[start : start + 2000])
            out.update((sku, np.asarray(v, np.float32)) for sku, v in rows.values_list("product__sku", column))
        return out

    return KnownFeatures(model.backbone, encoder_for(model).image_size, fetch)


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except OSError:
        return ""


def resolved_params(params: dict) -> dict:
    merged = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
    merged["backbone"] = merged["backbone"] or settings.EMBEDDINGS_IMAGE_BACKBONE
    merged["dim"] = int(merged["dim"] or settings.EMBED_DIM)
    if merged["text"] not in ("gru", "minilm"):
        raise ValueError(f"text tower must be 'gru' or 'minilm', got {merged['text']!r}")
    if merged["mining"] not in ("hardest", "semi-hard"):
        raise ValueError(f"mining must be 'hardest' or 'semi-hard', got {merged['mining']!r}")
    return merged


def run_training(job: TrainingJob, echo: Callable[[dict], None] | None = None) -> EmbeddingModel:
    """Train with job.params on the current catalogue; register (and maybe activate) the model."""
    from ml.training import train  # lazy: torch (~1 s, ~600 MB), for the process that trains only

    params = resolved_params(job.params)
    job.params, job.status = params, TrainingJob.Status.RUNNING
    job.save(update_fields=["params", "status"])
    records = catalogue_records()
    if len(records) < 20:
        raise ValueError(f"the catalogue has {len(records)} products; training needs at least 20")
    stamp = f"{timezone.now():%Y%m%d-%H%M%S}"
    out_dir = settings.MODELS_DIR / (params.get("name") or f"joint-{stamp}")
    image_cfg = ImageTowerCfg(
        backbone=params["backbone"], weights_path=settings.RESNET50_WEIGHTS, embed_dim=params["dim"]
    )
    text_cfg = TextTowerCfg(kind=params["text"], embed_dim=params["dim"])
    train_cfg = TrainCfg(
        epochs=int(params["epochs"]),
        margin=float(params["margin"]),
        mining=params["mining"],
        seed=int(params["seed"]),
        cache_dir=str(settings.MODELS_DIR / "feature_cache"),
        distill_corpus=settings.EMBEDDINGS_DISTILL_CORPUS,
    )
    last_save = [0.0]

    def progress(event: dict) -> None:
        if echo:
            echo(event)
        now = timezone.now().timestamp()
        if event.get("phase") == "train" and "epoch" in event:
            job.history.append({k: v for k, v in event.items() if isinstance(v, (int, float, str))})
        # Progress goes to the DB at most twice a second: the page polls it.
        if now - last_save[0] > 0.5 or event.get("phase") == "train":
            job.progress = {k: v for k, v in event.items() if isinstance(v, (int, float, str))}
            job.save(update_fields=["progress", "history"])
            last_save[0] = now

    result = train(records, image_cfg, text_cfg, train_cfg, out_dir, progress=progress, known=active_features())
    categories = sorted({r.category for r in records})
    # Named after the backbone really used: a ResNet50 request may have fallen back.
    name = params.get("name") or f"joint-{result.backbone}-{params['text']}-{stamp}"
    notes = fallback_note(params["backbone"], result.backbone)
    model = register_checkpoint(
        result.checkpoint_path,
        name=name,
        notes=notes,
        training_data={
            "source": "catalogue",
            "products": len(records) - len(result.skipped),
            "skipped": result.skipped[:50],
            "categories": len(categories),
            "params": params,
            "git_commit": _git_commit(),
            # The gate probes these: products the model never trained on.
            "heldout_skus": result.heldout,
        },
        metrics=result.metrics,
        curve=str(result.curve_png),
    )
    job.model, job.status, job.finished_at = model, TrainingJob.Status.DONE, timezone.now()
    job.save(update_fields=["model", "status", "finished_at"])
    if job.activate:
        # Gated: it serves search only if it measures no worse than the active model.
        start_activation(model, gate=True)
    return model
