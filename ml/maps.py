"""2-D maps of catalogue embeddings (t-SNE), cached as JSON files.

No Django here: callers pass the vectors and a cache directory. t-SNE on a few thousand
points takes tens of seconds, so a map is computed once per (model, catalogue content)
and read back from disk afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_POINTS = 3000  # per kind (image, text); larger catalogues are sampled by seed
PCA_DIMS = 50  # t-SNE's neighbour search is much faster on 50 PCA components
VERSION = 1  # bump when the layout or the JSON changes, so stale caches are ignored


@dataclass
class MapInput:
    """The rows to place on the map; vectors are aligned with `items`."""

    model_id: int
    joint: bool
    items: list[dict]  # one dict per product: id, title, category, url, thumb...
    content_hashes: Sequence[str]  # per item: what its vectors were computed from
    image_vecs: np.ndarray
    text_vecs: np.ndarray


def cache_key(model_id: int, content_hashes: Sequence[str], max_points: int = MAX_POINTS) -> str:
    digest = hashlib.sha256()
    for h in sorted(content_hashes):
        digest.update(h.encode())
        digest.update(b"\n")
    return f"model{model_id}-v{VERSION}-n{max_points}-{digest.hexdigest()[:20]}"


def sample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Indices of at most `max_points` of `n` rows, the same ones on every run."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def tsne_2d(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, d) vectors -> (n, 2) coordinates scaled into [0, 1]."""
    # Lazy: sklearn (~0.6 s, ~100 MB) only in the process that draws a map.
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2))
    if n < 4:  # t-SNE needs a few neighbours; a handful of points just goes on a line
        coords = np.column_stack([np.arange(n, dtype=float), np.zeros(n)])
    else:
        x = np.asarray(vectors, dtype=np.float32)
        if x.shape[1] > PCA_DIMS and n > PCA_DIMS:
            x = PCA(PCA_DIMS, random_state=seed).fit_transform(x)
        # perplexity must stay below the number of points; small catalogues get a small one
        perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
        coords = TSNE(2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(x)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return (coords - lo) / span


def build_map(data: MapInput, max_points: int = MAX_POINTS, seed: int = 0) -> dict:
    """Project image and text vectors: together for a joint model, apart for a baseline."""
    keep = sample(len(data.items), max_points, seed)
    items = [data.items[i] for i in keep]
    image, text = data.image_vecs[keep], data.text_vecs[keep]
    n = len(items)

    def points(coords: np.ndarray, kind: str) -> list[dict]:
        return [
            {"x": round(float(x), 4), "y": round(float(y), 4), "kind": kind, "p": i, "category": items[i]["category"]}
            for i, (x, y) in enumerate(coords)
        ]

    if data.joint and image.shape[1] == text.shape[1]:
        coords = tsne_2d(np.concatenate([image, text]), seed)
        panels = [
            {
                "title": "Photos and texts in one space",
                "points": points(coords[:n], "image") + points(coords[n:], "text"),
            }
        ]
    else:
        panels = [
            {"title": f"Photos ({image.shape[1]}-d image space)", "points": points(tsne_2d(image, seed), "image")},
            {"title": f"Texts ({text.shape[1]}-d text space)", "points": points(tsne_2d(text, seed), "text")},
        ]
    categories = sorted({item["category"] for item in items})
    return {
        "status": "ready",
        "model_id": data.model_id,
        "joint": len(panels) == 1,
        "products": items,
        "total_products": len(data.items),
        "sampled": len(data.items) > n,
        "categories": categories,
        "panels": panels,
    }


def read_cached(cache_dir: Path, key: str) -> dict | None:
    path = cache_dir / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_cached(cache_dir: Path, key: str, result: dict) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    # write then rename, so a reader never sees half a file
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(result, handle, separators=(",", ":"))
    os.chmod(tmp, 0o644)
    os.replace(tmp, cache_dir / f"{key}.json")


_running: dict[str, threading.Thread] = {}
_errors: dict[str, str] = {}
_lock = threading.Lock()


def get_or_start(cache_dir: Path, key: str, load: Callable[[], MapInput], background: bool) -> dict:
    """The cached map, or compute it: inline, or in a thread while the caller polls.

    The thread lives in the web process; a second request for the same key while it runs
    just reports "computing". A restart loses the work, and the next request starts again.
    """
    cached = read_cached(cache_dir, key)
    if cached is not None:
        return cached
    if not background:
        result = build_map(load())
        write_cached(cache_dir, key, result)
        return result
    with _lock:
        if key in _errors:
            return {"status": "failed", "error": _errors.pop(key)}
        thread = _running.get(key)
        if thread is None or not thread.is_alive():
            data = load()  # load in the request: the thread then needs no database connection

            def work() -> None:
                try:
                    write_cached(cache_dir, key, build_map(data))
                except Exception as exc:  # reported to the next poll
                    _errors[key] = f"{type(exc).__name__}: {exc}"
                finally:
                    _running.pop(key, None)

            thread = threading.Thread(target=work, name=f"map-{key}", daemon=True)
            _running[key] = thread
            thread.start()
    return {"status": "computing"}
