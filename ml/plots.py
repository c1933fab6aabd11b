"""The learning curve a training run draws (loss and validation recall per epoch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def save_curve(history: Sequence[dict[str, float]], path: Path) -> None:
    # Lazy: matplotlib (~0.3 s, ~50 MB) is needed once, when a training run ends.
    import matplotlib

    matplotlib.use("Agg")  # headless workers
    import matplotlib.pyplot as plt  # lazy, as matplotlib above (after choosing the headless backend)

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
    ax1.legend(lines, [str(ln.get_label()) for ln in lines], loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
