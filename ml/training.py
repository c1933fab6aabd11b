"""Training the joint image/text space: train() runs the epochs and keeps the best checkpoint.

On CPU the backbone is frozen: its pooled features are computed once (plus a
horizontally flipped view) and cached on disk (ml/features.py), and only the image head and
the text tower are trained, which takes seconds to minutes instead of hours.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .backbones import backbone_spec, last_stage
from .checkpoints import save_checkpoint
from .config import ImageTowerCfg, Progress, TextTowerCfg, TrainCfg
from .data import KnownFeatures, Record, group_ids, split_by_product
from .distill import build_distiller
from .features import extract_features
from .losses import CrossModalTripletLoss
from .metrics import evaluate
from .plots import save_curve
from .query_views import SentenceViewBank, TextViews
from .text_inputs import TextInputs
from .towers import GRUTextTower, ImageTower, MiniLMTextTower, build_text_tower
from .transforms import open_image, to_train_input

logger = logging.getLogger(__name__)


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


def _embed_all(
    head: ImageTower, text: TextInputs, feats: torch.Tensor, index: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    img, txt = [], []
    with torch.no_grad():
        for s in range(0, len(index), 256):
            part = list(index[s : s + 256])
            img.append(head.forward_features(feats[part, 0]).cpu().numpy())
            txt.append(text.embed(part).cpu().numpy())
    return np.concatenate(img), np.concatenate(txt)


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


class WeightAverage:
    """An exponential moving average of the trained parameters, swapped into the towers to
    validate and save them: it smooths out the last steps' noise, which with a few thousand
    products and semi-hard mining moves a model's scores from one epoch to the next."""

    def __init__(self, params: list[torch.nn.Parameter], half_life_steps: float) -> None:
        self.params = params
        self.decay = 0.5 ** (1.0 / half_life_steps)
        self.reset()

    def reset(self) -> None:
        """Start the average again from the parameters as they are now."""
        self.updates = 0
        self.average = [p.detach().clone() for p in self.params]

    def update(self) -> None:
        self.updates += 1
        # A short average at first, so that the start's random weights fade out fast.
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for avg, p in zip(self.average, self.params):
                avg.lerp_(p.detach(), 1.0 - decay)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        trained = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, avg in zip(self.params, self.average):
                p.copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, t in zip(self.params, trained):
                    p.copy_(t)


def _restore(path: Path, image_tower: ImageTower, text_tower: torch.nn.Module) -> None:
    """Load the trained weights saved in `path` back into the towers (frozen parts stay)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    image_tower.load_state_dict(state["image_tower"], strict=False)
    text_tower.load_state_dict(state["text_tower"], strict=False)


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
    image_views = (2 if train_cfg.flip_augment else 1) + train_cfg.perturbed_views
    feats_np, ok = extract_features(
        records,
        image_tower,
        cache_dir,
        image_views,
        train_cfg.feature_batch_size,
        progress,
        flip=train_cfg.flip_augment,
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
    text_inputs = TextInputs(text_tower, texts, device)
    views: TextViews | None = None
    bank: SentenceViewBank | None = None
    if train_cfg.query_views:
        gru = text_tower if isinstance(text_tower, GRUTextTower) else None
        views = TextViews(gru, [r.title for r in usable], [r.category for r in usable], texts, train_cfg.seed)
        if gru is None:
            bank = SentenceViewBank(views, text_inputs.encode_sentences)

    distiller = None
    if train_cfg.distill and isinstance(text_tower, GRUTextTower):
        distiller = build_distiller(text_tower, [texts[i] for i in train_idx], train_cfg, cache_dir, device, progress)

    params = [p for p in image_tower.head.parameters()] + [p for p in text_tower.parameters() if p.requires_grad]
    if distiller is not None:
        params += [p for p in distiller.head.parameters() if not any(p is q for q in params)]
    if finetune:
        # GPU only: unfreeze the last stage and train on augmented pixels.
        assert image_tower.backbone is not None  # ImageTower(cfg) builds its backbone
        for module in last_stage(image_tower.backbone, backbone):
            for p in module.parameters():
                p.requires_grad_(True)
                params.append(p)
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    rng = random.Random(train_cfg.seed)
    steps_per_epoch = len(_batches(train_idx, train_cfg.batch_size, random.Random(0)))
    average = WeightAverage(params, train_cfg.ema_half_life * steps_per_epoch) if train_cfg.ema_half_life > 0 else None

    def optimizer_for(epochs: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": train_cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=train_cfg.lr,
        )
        schedule = _lr_lambda(steps_per_epoch * epochs, steps_per_epoch)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

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

    def validate_and_keep(
        epoch: int, phase: int, distill_weight: float, losses: list[float], active: list[float], started: float
    ) -> bool:
        """Validate the towers' weights as they are; save them when they are the best so far."""
        nonlocal best, best_metrics
        img_emb, txt_emb = _embed_all(image_tower, text_inputs, feats, val_idx)
        metrics = evaluate(img_emb, txt_emb, [groups_all[i] for i in val_idx])
        with torch.no_grad():
            val_loss = float(
                loss_fn(
                    torch.from_numpy(img_emb),
                    torch.from_numpy(txt_emb),
                    torch.tensor([groups_all[i] for i in val_idx]),
                    mining=train_cfg.mining,
                )
            )
        row = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "val_loss": val_loss,
            "val_recall@10": metrics["t2i_recall@10"],
            "val_map@10": metrics["t2i_map@10"],
            "active": float(np.mean(active)),
            "seconds": time.monotonic() - started,
            "phase": phase,
            "distill_weight": distill_weight if distiller is not None else 0.0,
        }
        history.append(row)
        score = (metrics["t2i_recall@10"], metrics["t2i_map@10"])
        improved = best is None or score > best
        if improved:
            best = score
            best_metrics = {**metrics, "epoch": epoch, "eval_split_is_val": float(eval_split == "val")}
            save_checkpoint(
                ckpt_path, cfg, text_cfg, train_cfg, image_tower, text_tower, backbone, best_metrics, epoch, finetune
            )
        return improved

    def run_epoch(
        epoch: int,
        phase: int,
        distill_weight: float,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LambdaLR,
    ) -> bool:
        """One epoch of training, then validation; True when it is the best so far (saved)."""
        started = time.monotonic()
        image_tower.head.train()
        text_tower.train()
        if finetune:
            assert image_tower.backbone is not None
            image_tower.backbone.train()
        mining = "semi-hard" if epoch <= train_cfg.warmup_epochs else train_cfg.mining
        losses, active = [], []
        for index in _batches(train_idx, train_cfg.batch_size, rng):
            if bank is not None:
                assert isinstance(text_tower, MiniLMTextTower)  # the bank is made for MiniLM only
                sentences, also_described = bank.sample(index)
                text_emb = text_tower.forward_features(sentences.to(device))
            elif views is not None:
                rows, also_described = views.sample(index)
                text_emb = text_inputs.embed(index, rows)
            else:
                text_emb, also_described = text_inputs.embed(index), None
            loss, stats = loss_fn(
                image_batch(index),
                text_emb,
                groups_t[index],
                mining=mining,
                return_stats=True,
                not_negative=also_described,
            )
            if train_cfg.image_pair_weight > 0 and feats.shape[1] > 1 and not finetune:
                # Two views of one photo are the same item: keeps photo search item-precise.
                first = torch.randint(0, feats.shape[1], (len(index),), device=device)
                second = (first + torch.randint(1, feats.shape[1], (len(index),), device=device)) % feats.shape[1]
                loss = loss + train_cfg.image_pair_weight * loss_fn(
                    image_tower.forward_features(feats[index, first]),
                    image_tower.forward_features(feats[index, second]),
                    groups_t[index],
                    mining=mining,
                )
            if distiller is not None:
                # Keep the general word meaning while the tower learns the catalogue.
                loss = loss + distill_weight * distiller.loss(distiller.sample(train_cfg.batch_size))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            scheduler.step()
            if average is not None:
                average.update()
            losses.append(loss.item())
            active.append(stats["active"])

        image_tower.eval()
        text_tower.eval()
        with average.swapped_in() if average is not None else nullcontext():
            improved = validate_and_keep(epoch, phase, distill_weight, losses, active, started)
        row = history[-1]
        logger.info("epoch %d loss %.4f val R@10 %.3f", epoch, row["loss"], row["val_recall@10"])
        if progress:
            progress(
                {
                    "phase": "train",
                    "epoch": epoch,
                    "epochs": train_cfg.epochs,
                    "loss": row["loss"],
                    "val_recall@10": row["val_recall@10"],
                    "done": epoch,
                    "total": train_cfg.epochs,
                }
            )
        return improved

    # (distillation weight, most epochs) per phase; a later phase starts from the best
    # checkpoint, and every phase together stays within train_cfg.epochs.
    phases = [(train_cfg.distill_weight, train_cfg.epochs)]
    if distiller is not None and train_cfg.late_distill_weight is not None and train_cfg.late_epochs > 0:
        phases.append((train_cfg.late_distill_weight, train_cfg.late_epochs))
    epoch = 0
    for phase, (distill_weight, most) in enumerate(phases):
        phase_epochs = min(most, train_cfg.epochs - epoch)
        if phase_epochs <= 0:
            break
        if phase:
            _restore(ckpt_path, image_tower, text_tower)
            if average is not None:
                average.reset()
        optimizer, scheduler = optimizer_for(phase_epochs)
        stale = 0
        for _ in range(phase_epochs):
            epoch += 1
            if run_epoch(epoch, phase, distill_weight, optimizer, scheduler):
                stale = 0
            else:
                stale += 1
            if stale >= train_cfg.patience:
                break

    save_curve(history, curve_path)
    heldout = [r.sku for r in val_recs]
    return TrainResult(ckpt_path, best_metrics, curve_path, history, backbone, skipped, heldout)
