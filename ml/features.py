"""Backbone features for training: computed once per image and view, cached on disk.

On CPU the backbone is frozen, so training reads these pooled features instead of pixels.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .backbones import autocast, backbone_spec, bf16_supported
from .config import Progress
from .data import KnownFeatures, Record, content_hash
from .perturb import perturb
from .towers import ImageTower
from .transforms import ImageError, open_image, to_model_input

logger = logging.getLogger(__name__)


def extract_features(
    records: Sequence[Record],
    tower: ImageTower,
    cache_dir: Path,
    views: int = 2,
    batch_size: int = 32,
    progress: Progress | None = None,
    flip: bool = True,
    known: KnownFeatures | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Pooled backbone features, (N_ok, views, feat_dim), and the indices of usable records.

    View 0 is the centre crop, then (with ``flip``) its mirror image, then perturbed copies
    (ml/perturb.py: crop, rotation, brightness, JPEG; seeded by the image's hash,
    so a view is the same on every run). Cached per (backbone, image size, image content
    hash) so retraining is cheap.
    """
    assert tower.backbone is not None
    spec = backbone_spec(tower.backbone_name)
    size = tower.cfg.image_size
    # The folder names the views it holds: cached arrays of another view recipe never mix in.
    first_perturbed = 2 if flip else 1
    cache = cache_dir / f"{tower.backbone_name}_{size}_{'f' if flip else ''}p{views - first_perturbed}"
    cache.mkdir(parents=True, exist_ok=True)
    device = next(tower.backbone.parameters()).device
    use_bf16 = bf16_supported(device)
    backbone = tower.backbone.eval().to(memory_format=torch.channels_last)

    feats: dict[int, np.ndarray] = {}
    todo: list[tuple[int, Path, bytes]] = []
    for i, rec in enumerate(records):
        try:
            data = rec.read_image()
        except OSError as exc:
            logger.warning("skipping %s: %s", rec.sku, exc)
            continue
        path = cache / f"{content_hash(data)}.npy"
        if path.exists():
            cached = np.load(path)
            if cached.shape[0] >= views:
                feats[i] = cached[:views].astype(np.float32)
                continue
        todo.append((i, path, data))

    view0: dict[str, np.ndarray] = {}
    if todo and known is not None and (known.backbone, known.image_size) == (tower.backbone_name, size):
        fetched = known.fetch([records[i].sku for i, _, _ in todo])
        view0 = {sku: f for sku, f in fetched.items() if f.shape == (tower.feat_dim,)}
    total = len(todo)
    for start in range(0, total, batch_size):
        chunk = todo[start : start + batch_size]
        images, keep = [], []
        for i, path, data in chunk:
            try:
                images.append(open_image(data, draft_size=size))
                keep.append((i, path))
            except ImageError as exc:
                logger.warning("skipping %s: %s", records[i].sku, exc)
        if images:
            per_view = []
            for v in range(views):
                if v == 0 and all(records[i].sku in view0 for i, _ in keep):
                    per_view.append(np.stack([view0[records[i].sku] for i, _ in keep]))
                    continue
                view_images = images
                if v >= first_perturbed:
                    view_images = [
                        perturb(im, random.Random(f"{path.stem}:{v}")) for im, (_, path) in zip(images, keep)
                    ]
                x = torch.from_numpy(to_model_input(view_images, size, spec.mean, spec.std, hflip=flip and v == 1))
                x = x.to(device).contiguous(memory_format=torch.channels_last)
                with torch.no_grad(), autocast(device, use_bf16):
                    per_view.append(backbone(x).float().cpu().numpy())
            batch = np.stack(per_view, axis=1)  # N, views, D
            for (i, path), f in zip(keep, batch):
                np.save(path, f.astype(np.float16))  # half precision halves the cache
                feats[i] = f.astype(np.float16).astype(np.float32)
        if progress:
            progress({"phase": "features", "done": min(start + batch_size, total), "total": total})
    ok = sorted(feats)
    if not ok:
        raise ValueError("no usable product images")
    return np.stack([feats[i] for i in ok]), ok
