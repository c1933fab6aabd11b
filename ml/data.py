"""Catalogue records from an exported CSV, product texts, the train/val split, and the backbone
features a training run may be handed (KnownFeatures)."""

from __future__ import annotations

import csv
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REQUIRED_COLUMNS = ("sku", "title", "description", "category", "price", "image")


@dataclass
class Record:
    sku: str
    title: str
    description: str
    category: str
    price: float | None
    image_path: Path | None  # absolute; None when the row has no image
    image_bytes: bytes | None = None  # in-memory alternative (tests, tasks)

    @property
    def text(self) -> str:
        return product_text(self.title, self.description, self.category)

    @property
    def group_key(self) -> str:
        # Same category + same title: treated as the same product for mining/eval.
        return f"{self.category.strip().lower()}\x00{self.title.strip().lower()}"

    def read_image(self) -> bytes:
        if self.image_bytes is not None:
            return self.image_bytes
        if self.image_path is None:
            raise FileNotFoundError(f"product {self.sku} has no image")
        return self.image_path.read_bytes()


def product_text(title: str, description: str = "", category: str = "") -> str:
    parts = [title.strip()]
    if description.strip():
        parts.append(description.strip())
    text = ". ".join(parts)
    if category.strip():
        text = f"{text} ({category.strip()})"
    return text


def length_order(texts: Sequence[str]) -> list[int]:
    """Indices of ``texts``, shortest first. Batches of texts of similar length pad little:
    encoding a corpus in this order is several times faster for a transformer on a CPU."""
    return sorted(range(len(texts)), key=lambda i: len(texts[i]))


def _price(value: str) -> float | None:
    try:
        return float(value.replace(",", ".")) if value.strip() else None
    except ValueError:
        return None


def read_catalogue_csv(path: str | Path) -> list[Record]:
    """Read an exported catalogue CSV; image paths are relative to the CSV."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
        records = []
        for row in reader:
            image = (row["image"] or "").strip()
            records.append(
                Record(
                    sku=row["sku"].strip(),
                    title=(row["title"] or "").strip(),
                    description=(row["description"] or "").strip(),
                    category=(row["category"] or "").strip(),
                    price=_price(row["price"] or ""),
                    image_path=(path.parent / image).resolve() if image else None,
                )
            )
    return records


def group_ids(records: Sequence[Record]) -> list[int]:
    index: dict[str, int] = {}
    return [index.setdefault(r.group_key, len(index)) for r in records]


def split_by_product(records: Sequence[Record], val_fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Deterministic split keeping all rows of a group (category+title) on one side."""
    keys = sorted({r.group_key for r in records})
    random.Random(seed).shuffle(keys)
    n_val = int(round(len(keys) * val_fraction))
    if val_fraction > 0 and len(keys) >= 4:
        n_val = max(n_val, 1)
    val_keys = set(keys[:n_val])
    train = [r for r in records if r.group_key not in val_keys]
    val = [r for r in records if r.group_key in val_keys]
    return train, val


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class KnownFeatures:
    """Backbone features of the plain view (view 0) computed before, e.g. the active model's
    stored vectors. Used when the backbone and input size match: one backbone pass per
    product fewer (the head normalises features, so unit-length ones do). ``fetch`` is asked
    once, for the skus the feature cache lacks, and returns those it has."""

    backbone: str
    image_size: int
    fetch: Callable[[list[str]], dict[str, np.ndarray]]
