"""Bidirectional cross-modal triplet loss with in-batch negative mining."""

from __future__ import annotations

import torch
from torch import nn

MINING = ("hardest", "semi-hard")


def pairwise_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between rows of unit vectors, (N, M)."""
    sq = (2.0 - 2.0 * a @ b.T).clamp(min=1e-12)  # clamp: sqrt has an infinite gradient at 0
    return sq.sqrt()


def select_negatives(dist: torch.Tensor, valid: torch.Tensor, mining: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per anchor row: (positive distance, chosen negative distance) and which rows have negatives.

    ``dist[i, i]`` is the positive of anchor ``i``; ``valid[i, j]`` marks
    allowed negatives. Semi-hard picks the closest negative that is farther
    than the positive, falling back to the hardest when there is none.
    """
    pos = dist.diagonal()
    inf = torch.finfo(dist.dtype).max
    masked = dist.masked_fill(~valid, inf)
    hardest = masked.min(dim=1).values
    if mining == "semi-hard":
        farther = valid & (dist > pos[:, None])
        semi = dist.masked_fill(~farther, inf).min(dim=1).values
        neg = torch.where(farther.any(dim=1), semi, hardest)
    elif mining == "hardest":
        neg = hardest
    else:
        raise ValueError(f"mining must be one of {MINING}, got {mining!r}")
    return torch.stack([pos, neg], dim=1), valid.any(dim=1)


class CrossModalTripletLoss(nn.Module):
    """Triplet loss in both directions over a batch of matching (image, text) pairs.

    Row ``i`` of ``image`` and ``text`` is a positive pair; every other row
    in the batch is a negative unless it shares ``group_ids[i]`` (same
    product listed twice, or same category + title), in which case it is
    neither positive nor negative.
    """

    def __init__(self, margin: float = 0.4, mining: str = "hardest") -> None:
        super().__init__()
        if mining not in MINING:
            raise ValueError(f"mining must be one of {MINING}, got {mining!r}")
        self.margin = margin
        self.mining = mining

    def forward(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        group_ids: torch.Tensor | None = None,
        mining: str | None = None,
        return_stats: bool = False,
        not_negative: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, float]]:
        n = image.shape[0]
        mining = mining or self.mining
        dist = pairwise_distance(image.float(), text.float())  # [i, j] = image i vs text j
        valid = ~torch.eye(n, dtype=torch.bool, device=image.device)
        if group_ids is not None:
            valid &= group_ids[:, None] != group_ids[None, :]
        if not_negative is not None:
            # [i, j] True: text j also describes image i (e.g. a short query-like view), so
            # the pair is not a negative in either direction.
            valid &= ~not_negative.to(valid.device)
        # Image anchors compare against texts (rows); text anchors against images (columns).
        i2t, has_i2t = select_negatives(dist, valid, mining)
        t2i, has_t2i = select_negatives(dist.T, valid.T, mining)
        pairs = torch.cat([i2t[has_i2t], t2i[has_t2i]])
        if len(pairs) == 0:
            loss = image.sum() * 0.0  # keeps the graph; nothing to learn from this batch
            stats = {"active": 0.0, "pos_dist": 0.0, "neg_dist": 0.0}
        else:
            hinge = (self.margin + pairs[:, 0] - pairs[:, 1]).clamp(min=0)
            loss = hinge.mean()
            stats = {
                "active": float((hinge.detach() > 0).float().mean()),
                "pos_dist": float(pairs[:, 0].detach().mean()),
                "neg_dist": float(pairs[:, 1].detach().mean()),
            }
        return (loss, stats) if return_stats else loss
