"""Training the joint image/text space.

On CPU the backbone is frozen: its pooled features are computed once (plus a
horizontally flipped view) and cached on disk, and only the image head and
the text tower are trained, which takes seconds to minutes instead of hours.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .backbones import autocast, backbone_spec, bf16_supported, last_stage
from .config import CHECKPOINT_FORMAT, ImageTowerCfg, TextTowerCfg, TrainCfg
from .data import Record, content_hash, group_ids, length_order, split_by_product
from .losses import CrossModalTripletLoss
from .metrics import rank_by_similarity, retrieval_metrics
from .perturb import perturb
from .distill import Distiller, teacher_vectors
from .query_views import SentenceViewBank, TextViews
from .wordnet import distillation_corpus, wordnet_available
from .tokenizer import PAD
from .towers import GRUTextTower, ImageTower, MiniLM, MiniLMTextTower, build_text_tower, text_tower_state
from .transforms import ImageError, open_image, to_model_input, to_train_input

logger = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    checkpoint_path: Path
    metrics: dict[str, float]
    curve_png: Path
    history: list[dict[str, float]] = field(default_factory=list)
    backbone: str = ""  # backbone actually used, after any fallback
    skipped: list[str] = field(default_factory=list)  # skus whose image could not be read
    heldout: list[str] = field(default_factory=list)  # skus of the validation split (never trained on)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- backbone features ------------------------------------------------------


@dataclass
class KnownFeatures:
    """Backbone features of the plain view (view 0) computed before, e.g. the active model's
    stored vectors. Used when the backbone and input size match: one backbone pass per
    product fewer (the head normalises features, so unit-length ones do). ``fetch`` is asked
    once, for the skus the feature cache lacks, and returns those it has."""

    backbone: str
    image_size: int
    fetch: Callable[[list[str]], dict[str, np.ndarray]]


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
    backbone = tower.backbone.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]

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


# --- text inputs ------------------------------------------------------------


class _TextInputs:
    """Pre-tokenised (GRU) or pre-encoded (frozen MiniLM) texts, batched by index."""

    def __init__(self, tower: nn.Module, texts: Sequence[str], device: torch.device) -> None:
        self.tower, self.device = tower, device
        if isinstance(tower, MiniLMTextTower):
            self.sentences = self.encode_sentences(texts)
        else:
            assert isinstance(tower, GRUTextTower)
            self.rows = [tower.vocab.ids(t, tower.cfg.max_len) for t in texts]

    def encode_sentences(self, texts: Sequence[str]) -> torch.Tensor:
        chunks = []
        order = length_order(texts)
        with torch.no_grad():
            for s in range(0, len(texts), 64):
                batch = self.tower.tokenize([texts[i] for i in order[s : s + 64]])
                chunks.append(self.tower.minilm(**{k: v.to(self.device) for k, v in batch.items()}).cpu())
        return torch.cat(chunks)[torch.from_numpy(np.argsort(order))]

    def embed(self, index: Sequence[int], rows: list[list[int]] | None = None) -> torch.Tensor:
        if isinstance(self.tower, MiniLMTextTower):
            return self.tower.forward_features(self.sentences[list(index)].to(self.device))
        rows = rows or [self.rows[i] for i in index]
        lengths = torch.tensor([len(r) for r in rows])
        ids = torch.full((len(rows), int(lengths.max())), PAD, dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r)
        return self.tower(ids.to(self.device), lengths)


# --- evaluation -------------------------------------------------------------


def evaluate(image_emb: np.ndarray, text_emb: np.ndarray, groups: Sequence[int], k: int = 10) -> dict[str, float]:
    """text->image and image->text retrieval among the given products.

    Products sharing a group (category + title) count as relevant to each other.
    """
    ids = list(range(len(groups)))
    relevant = [{j for j in ids if groups[j] == groups[i]} for i in ids]
    out: dict[str, float] = {}
    for prefix, queries, items in (("t2i", text_emb, image_emb), ("i2t", image_emb, text_emb)):
        ranked = rank_by_similarity(queries, items, ids, k)
        for name, value in retrieval_metrics(ranked, relevant, ks=(1, 5, k)).items():
            out[f"{prefix}_{name}"] = value
    return out


def _embed_all(head: ImageTower, text: _TextInputs, feats: torch.Tensor, index: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    img, txt = [], []
    with torch.no_grad():
        for s in range(0, len(index), 256):
            part = list(index[s : s + 256])
            img.append(head.forward_features(feats[part, 0]).cpu().numpy())
            txt.append(text.embed(part).cpu().numpy())
    return np.concatenate(img), np.concatenate(txt)


# --- checkpoint and curve ---------------------------------------------------


def save_checkpoint(
    path: Path,
    image_cfg: ImageTowerCfg,
    text_cfg: TextTowerCfg,
    train_cfg: TrainCfg,
    image_tower: ImageTower,
    text_tower: nn.Module,
    backbone: str,
    metrics: dict[str, float],
    epoch: int,
    finetuned: bool = False,
) -> None:
    vocab = text_tower.vocab.to_dict() if isinstance(text_tower, GRUTextTower) else None
    # A frozen backbone is reloaded from its own weights; store it only when fine-tuned.
    image_state = {
        k: v for k, v in image_tower.state_dict().items() if finetuned or k.startswith("head.")
    }
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "image_cfg": image_cfg.to_dict(),
            "text_cfg": text_cfg.to_dict(),
            "train_cfg": train_cfg.to_dict(),
            "backbone": backbone,
            "image_tower": image_state,
            "text_tower": text_tower_state(text_tower),
            "vocab": vocab,
            "metrics": metrics,
            "epoch": epoch,
            "torch": str(torch.__version__),
        },
        path,
    )


def save_curve(history: Sequence[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless workers
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax1.plot(epochs, [h["loss"] for h in history], label="train loss", color="tab:blue")
    ax1.plot(epochs, [h["val_loss"] for h in history], label="val loss", color="tab:blue", linestyle="--")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("triplet loss")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h["val_recall@10"] for h in history], label="val text→image R@10", color="tab:orange")
    ax2.set_ylabel("recall@10")
    ax2.set_ylim(0, 1)
    lines = ax1.get_lines() + ax2.get_lines()
    ax1.legend(lines, [ln.get_label() for ln in lines], loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --- training ---------------------------------------------------------------


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return f


def _batches(index: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    order = index[:]
    rng.shuffle(order)
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < max(2, batch_size // 4):
        batches[-2].extend(batches.pop())  # a tiny last batch has too few negatives
    return batches


def _minilm_vectors(teacher: MiniLM, device: torch.device, batch: list[str]) -> np.ndarray:
    with torch.no_grad():
        tokens = teacher.tokenize(batch)
        return teacher(**{k: v.to(device) for k, v in tokens.items()}).float().cpu().numpy()


def build_distiller(
    tower: GRUTextTower,
    catalogue_texts: Sequence[str],
    train_cfg: TrainCfg,
    cache_dir: Path,
    device: torch.device,
    progress: Progress | None = None,
) -> Distiller:
    """A Distiller over WordNet + the catalogue's texts, pre-trained for ``distill_epochs``."""
    corpus = distillation_corpus(train_cfg.distill_corpus, train_cfg.seed) if wordnet_available() else []
    if not corpus:
        logger.warning("WordNet is not installed (Debian wordnet-base): distilling on catalogue texts only")
    texts = list(dict.fromkeys([*corpus, *catalogue_texts]))
    if progress:
        progress({"phase": "distill", "done": 0, "total": train_cfg.distill_epochs, "texts": len(texts)})
    # The teacher lives only while its targets are computed (or read from the cache).
    targets = teacher_vectors(texts, partial(_minilm_vectors, MiniLM().to(device).eval(), device), cache_dir)
    distiller = Distiller(tower, texts, targets, train_cfg.seed).to(device)
    losses = distiller.pretrain(train_cfg.distill_epochs, progress=progress)
    logger.info("distilled MiniLM into the GRU on %d texts: loss %s", len(texts), [round(x, 4) for x in losses])
    return distiller


def train(
    records: Sequence[Record],
    cfg: ImageTowerCfg,
    text_cfg: TextTowerCfg,
    train_cfg: TrainCfg,
    out_dir: Path,
    progress: Progress | None = None,
    known: KnownFeatures | None = None,
) -> TrainResult:
    """Train image head + text tower on catalogue records; save the best checkpoint.

    ``known``: view-0 backbone features already computed (see KnownFeatures).

    Early-stops on validation text->image recall@10 (ties broken by mAP@10).
    Writes ``model.pt`` and ``model_curve.png`` to ``out_dir``.
    """
    if cfg.embed_dim != text_cfg.embed_dim:
        raise ValueError("image and text towers need the same embed_dim")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if train_cfg.num_threads:
        torch.set_num_threads(train_cfg.num_threads)
    seed_everything(train_cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    finetune = cfg.finetune_last_stage and device.type == "cuda"

    image_tower = ImageTower(cfg).to(device)
    backbone = image_tower.backbone_name
    cache_dir = Path(train_cfg.cache_dir) if train_cfg.cache_dir else out_dir / "feature_cache"
    views = (2 if train_cfg.flip_augment else 1) + train_cfg.perturbed_views
    feats_np, ok = extract_features(
        records, image_tower, cache_dir, views, train_cfg.feature_batch_size, progress, flip=train_cfg.flip_augment,
        known=known,
    )
    usable = [records[i] for i in ok]
    ok_set = set(ok)
    skipped = [r.sku for i, r in enumerate(records) if i not in ok_set]
    feats = torch.from_numpy(feats_np).to(device)
    groups_all = group_ids(usable)
    groups_t = torch.tensor(groups_all, device=device)

    train_recs, val_recs = split_by_product(usable, train_cfg.val_fraction, train_cfg.seed)
    pos = {id(r): i for i, r in enumerate(usable)}
    train_idx = [pos[id(r)] for r in train_recs]
    val_idx = [pos[id(r)] for r in val_recs] or train_idx  # tiny catalogue: report train fit
    eval_split = "val" if val_recs else "train"

    texts = [r.text for r in usable]
    # The vocabulary sees training texts only, so validation measures unseen words too.
    text_tower = build_text_tower(text_cfg, texts=[texts[i] for i in train_idx]).to(device)
    text_inputs = _TextInputs(text_tower, texts, device)
    views = bank = None
    if train_cfg.query_views:
        is_gru = isinstance(text_tower, GRUTextTower)
        views = TextViews(
            text_tower if is_gru else None, [r.title for r in usable], [r.category for r in usable], texts, train_cfg.seed
        )
        if not is_gru:
            bank = SentenceViewBank(views, text_inputs.encode_sentences)

    distiller = None
    if train_cfg.distill and isinstance(text_tower, GRUTextTower):
        distiller = build_distiller(text_tower, [texts[i] for i in train_idx], train_cfg, cache_dir, device, progress)

    params = [p for p in image_tower.head.parameters()] + [p for p in text_tower.parameters() if p.requires_grad]
    if distiller is not None:
        params += [p for p in distiller.head.parameters() if not any(p is q for q in params)]
    if finetune:
        # GPU only: unfreeze the last stage and train on augmented pixels.
        for module in last_stage(image_tower.backbone, backbone):  # type: ignore[arg-type]
            for p in module.parameters():
                p.requires_grad_(True)
                params.append(p)
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": train_cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=train_cfg.lr,
    )
    rng = random.Random(train_cfg.seed)
    steps_per_epoch = len(_batches(train_idx, train_cfg.batch_size, random.Random(0)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(steps_per_epoch * train_cfg.epochs, steps_per_epoch)
    )
    loss_fn = CrossModalTripletLoss(train_cfg.margin, train_cfg.mining)
    spec = backbone_spec(backbone)

    def image_batch(index: list[int]) -> torch.Tensor:
        if finetune:
            imgs = [open_image(usable[i].read_image()) for i in index]
            x = torch.from_numpy(to_train_input(imgs, cfg.image_size, spec.mean, spec.std, rng)).to(device)
            return image_tower(x)
        view = torch.randint(0, feats.shape[1], (len(index),), device=device)
        return image_tower.forward_features(feats[index, view])

    ckpt_path = out_dir / "model.pt"
    curve_path = out_dir / "model_curve.png"
    history: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_metrics: dict[str, float] = {}
    stale = 0
    for epoch in range(1, train_cfg.epochs + 1):
        started = time.monotonic()
        image_tower.head.train()
        text_tower.train()
        if finetune:
            image_tower.backbone.train()  # type: ignore[union-attr]
        mining = "semi-hard" if epoch <= train_cfg.warmup_epochs else train_cfg.mining
        losses, active = [], []
        for index in _batches(train_idx, train_cfg.batch_size, rng):
            if bank is not None:
                sentences, also_described = bank.sample(index)
                text_emb = text_tower.forward_features(sentences.to(device))
            elif views is not None:
                rows, also_described = views.sample(index)
                text_emb = text_inputs.embed(index, rows)
            else:
                text_emb, also_described = text_inputs.embed(index), None
            loss, stats = loss_fn(
                image_batch(index), text_emb, groups_t[index], mining=mining, return_stats=True,
                not_negative=also_described,
            )
            if train_cfg.image_pair_weight > 0 and feats.shape[1] > 1 and not finetune:
                # Two views of one photo are the same item: keeps photo search item-precise.
                first = torch.randint(0, feats.shape[1], (len(index),), device=device)
                second = (first + torch.randint(1, feats.shape[1], (len(index),), device=device)) % feats.shape[1]
                loss = loss + train_cfg.image_pair_weight * loss_fn(
                    image_tower.forward_features(feats[index, first]),
                    image_tower.forward_features(feats[index, second]),
                    groups_t[index], mining=mining,
                )
            if distiller is not None:
                # Keep the general word meaning while the tower learns the catalogue.
                loss = loss + train_cfg.distill_weight * distiller.loss(distiller.sample(train_cfg.batch_size))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            active.append(stats["active"])

        image_tower.eval()
        text_tower.eval()
        img_emb, txt_emb = _embed_all(image_tower, text_inputs, feats, val_idx)
        metrics = evaluate(img_emb, txt_emb, [groups_all[i] for i in val_idx])
        with torch.no_grad():
            val_loss = float(loss_fn(torch.from_numpy(img_emb), torch.from_numpy(txt_emb), torch.tensor([groups_all[i] for i in val_idx]), mining=train_cfg.mining))
        row = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "val_loss": val_loss,
            "val_recall@10": metrics["t2i_recall@10"],
            "val_map@10": metrics["t2i_map@10"],
            "active": float(np.mean(active)),
            "seconds": time.monotonic() - started,
        }
        history.append(row)
        score = (metrics["t2i_recall@10"], metrics["t2i_map@10"])
        if best is None or score > best:
            best, stale = score, 0
            best_metrics = {**metrics, "epoch": epoch, "eval_split_is_val": float(eval_split == "val")}
            save_checkpoint(
                ckpt_path, cfg, text_cfg, train_cfg, image_tower, text_tower, backbone, best_metrics, epoch, finetune
            )
        else:
            stale += 1
        logger.info("epoch %d loss %.4f val R@10 %.3f", epoch, row["loss"], row["val_recall@10"])
        if progress:
            progress({
                "phase": "train", "epoch": epoch, "epochs": train_cfg.epochs, "loss": row["loss"],
                "val_recall@10": row["val_recall@10"], "done": epoch, "total": train_cfg.epochs,
            })
        if stale >= train_cfg.patience:
            break

    save_curve(history, curve_path)
    heldout = [r.sku for r in val_recs]
    return TrainResult(ckpt_path, best_metrics, curve_path, history, backbone, skipped, heldout)
