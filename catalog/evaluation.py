"""Offline relevance evaluation: every model and baseline on one query file.

Queries are JSON lines: {"query": "text", "relevant": [sku, ...]} or
{"image": "path relative to the file", "relevant": [...]}. Each method ranks the whole
catalogue exactly (brute force, no index), so the numbers measure the embeddings and the
fusion rule, not HNSW recall (bench/hnsw_recall measures that separately).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catalog.hybrid import rrf
from catalog.keyword import keyword_search
from catalog.models import Product
from ml.metrics import average_precision_at_k, mrr_at_k, precision_at_k, recall_at_k
from embeddings.models import EmbeddingModel, EvaluationRun, ProductVector
from embeddings.registry import encoder_for
from ml.transforms import open_image

logger = logging.getLogger(__name__)
DEPTH = 100  # how deep each list goes before fusion


@dataclass
class Query:
    text: str | None
    image: Path | None
    relevant: set[str]


def load_queries(path: Path) -> list[Query]:
    queries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path.name} line {number}: not JSON ({exc})") from exc
        relevant = item.get("relevant")
        if not isinstance(relevant, list) or not relevant:
            raise ValueError(f"{path.name} line {number}: 'relevant' must be a non-empty list of skus")
        if "query" in item:
            queries.append(Query(str(item["query"]), None, set(map(str, relevant))))
        elif "image" in item:
            image = (path.parent / item["image"]).resolve()
            if not image.is_file():
                raise ValueError(f"{path.name} line {number}: image {item['image']} not found")
            queries.append(Query(None, image, set(map(str, relevant))))
        else:
            raise ValueError(f"{path.name} line {number}: needs 'query' or 'image'")
    return queries


def metrics(ranked: list[list[str]], relevant: list[set[str]]) -> dict[str, float]:
    def mean(fn: Callable, k: int) -> float:
        return float(np.mean([fn(r, rel, k) for r, rel in zip(ranked, relevant)])) if ranked else 0.0

    return {
        "R@1": mean(recall_at_k, 1),
        "R@5": mean(recall_at_k, 5),
        "R@10": mean(recall_at_k, 10),
        "MRR@10": mean(mrr_at_k, 10),
        "mAP@10": mean(average_precision_at_k, 10),
        "P@10": mean(precision_at_k, 10),
    }


class Catalogue:
    """The products' ids/skus and, per model, their image and text vectors."""

    def __init__(self) -> None:
        rows = list(Product.objects.order_by("pk").values_list("pk", "sku"))
        self.ids = [pk for pk, _ in rows]
        self.skus = [sku for _, sku in rows]
        self.sku_of = dict(rows)

    def vectors(self, model: EmbeddingModel) -> tuple[np.ndarray, np.ndarray]:
        stored = ProductVector.current(model)
        if stored.count() == len(self.ids):
            by_id = {pid: (iv, tv) for pid, iv, tv in stored.values_list("product_id", "image_vec", "text_vec")}
            image = np.stack([np.asarray(by_id[i][0], dtype=np.float32) for i in self.ids])
            text = np.stack([np.asarray(by_id[i][1], dtype=np.float32) for i in self.ids])
            return image, text
        logger.info("encoding the catalogue with %s for evaluation (no stored vectors)", model.name)
        encoder = encoder_for(model)
        products = Product.objects.in_bulk(self.ids)
        image_parts, text_parts = [], []
        for start in range(0, len(self.ids), 256):
            batch = [products[i] for i in self.ids[start : start + 256]]
            images = []
            for p in batch:
                with p.image.open("rb") as handle:
                    images.append(open_image(handle.read()))
            image_parts.append(encoder.encode_images(images))
            text_parts.append(encoder.encode_texts([p.text_for_embedding for p in batch]))
        return np.concatenate(image_parts), np.concatenate(text_parts)

    def top(self, query_vecs: np.ndarray, items: np.ndarray, depth: int = DEPTH) -> list[list[tuple[int, float]]]:
        sims = query_vecs @ items.T
        depth = min(depth, sims.shape[1])
        part = np.argpartition(-sims, depth - 1, axis=1)[:, :depth]
        out = []
        for row, cand in zip(sims, part):
            order = cand[np.argsort(-row[cand], kind="stable")]
            out.append([(self.ids[j], float(row[j])) for j in order])
        return out

    def skus_of(self, ranking: list, k: int = 10) -> list[str]:
        """Skus of the first k items of a ranking of ids or of (id, score) pairs."""
        return [self.sku_of[item if isinstance(item, int) else item[0]] for item in ranking[:k]]


def evaluate(queries_path: Path, models: list[EmbeddingModel]) -> EvaluationRun:
    """Score keyword search, each model's semantic search and hybrid fusion; store the run."""
    queries = load_queries(queries_path)
    text_q = [q for q in queries if q.text]
    image_q = [q for q in queries if q.image]
    catalogue = Catalogue()
    if not catalogue.ids:
        raise ValueError("the catalogue is empty: ingest products first")
    rows: list[dict] = []

    def add(method: str, model: str, task: str, ranked: list[list[str]], relevant: list[set[str]]) -> None:
        rows.append(
            {"method": method, "model": model, "task": task, "queries": len(ranked), **metrics(ranked, relevant)}
        )

    text_rel = [q.relevant for q in text_q]
    image_rel = [q.relevant for q in image_q]
    keyword_lists = [keyword_search(q.text or "", DEPTH) for q in text_q]
    if text_q:
        add("keyword (Postgres full-text)", "-", "text→image", [catalogue.skus_of(r) for r in keyword_lists], text_rel)
    images = [open_image(q.image.read_bytes()) for q in image_q if q.image]
    for model in models:
        encoder = encoder_for(model)
        image_vecs, text_vecs = catalogue.vectors(model)
        if text_q:
            query_vecs = encoder.encode_texts([q.text or "" for q in text_q])
            # Joint models match words to photos; the baseline can only match words to texts.
            # The same lists catalog.search fuses: a joint model's words against the photos
            # and against the product texts; the baseline's words against texts only.
            if model.joint:
                photo = catalogue.top(query_vecs, image_vecs)
                own_text = catalogue.top(query_vecs, text_vecs)
                add("text→photo only", model.name, "text→image", [catalogue.skus_of(r) for r in photo], text_rel)
                semantic_lists = [{"semantic": p, "semantic_text": t} for p, t in zip(photo, own_text)]
                label = "semantic (RRF text→photo + text→text)"
            else:
                semantic_lists = [{"semantic": t} for t in catalogue.top(query_vecs, text_vecs)]
                label = "semantic (MiniLM text→text, baseline)"
            semantic = [[f.item for f in rrf(lists)] for lists in semantic_lists]
            add(label, model.name, "text→image", [catalogue.skus_of(r) for r in semantic], text_rel)
            hybrid = [
                [f.item for f in rrf({**lists, "keyword": kw})] for lists, kw in zip(semantic_lists, keyword_lists)
            ]
            add(
                "hybrid (RRF semantic + keyword)",
                model.name,
                "text→image",
                [catalogue.skus_of(h) for h in hybrid],
                text_rel,
            )
        if images:
            query_vecs = encoder.encode_images(images)
            ranked = catalogue.top(query_vecs, image_vecs)
            label = "photo→photo" if model.joint else f"photo→photo (pretrained {model.backbone} features, baseline)"
            add(label, model.name, "image→image", [catalogue.skus_of(r) for r in ranked], image_rel)
    return EvaluationRun.objects.create(
        queries_file=str(queries_path),
        n_text_queries=len(text_q),
        n_image_queries=len(image_q),
        results={"rows": rows, "products": len(catalogue.ids)},
    )
