"""The checkpoint a training run writes (ml/encoders.py reads it back for serving)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import CHECKPOINT_FORMAT, ImageTowerCfg, TextTowerCfg, TrainCfg
from .towers import GRUTextTower, ImageTower, text_tower_state


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
    image_state = {k: v for k, v in image_tower.state_dict().items() if finetuned or k.startswith("head.")}
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
