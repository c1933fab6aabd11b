from __future__ import annotations

import math

import pytest
import torch

from ml.losses import CrossModalTripletLoss, pairwise_distance, select_negatives


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def chord(deg: float) -> float:
    # Euclidean distance between unit vectors `deg` degrees apart.
    return 2 * math.sin(math.radians(deg) / 2)


def test_distance_is_euclidean_on_unit_vectors() -> None:
    a = torch.tensor([unit(0)])
    b = torch.tensor([unit(0), unit(90), unit(180)])
    assert pairwise_distance(a, b)[0].tolist() == pytest.approx([0.0, math.sqrt(2), 2.0], abs=1e-5)


def test_hardest_and_semi_hard_pick_different_negatives() -> None:
    # Anchor 0: positive at 30 deg, negatives at 10 deg (closer than positive) and 60 deg.
    dist = torch.tensor(
        [
            [chord(30), chord(10), chord(60)],
            [chord(50), chord(0), chord(90)],
            [chord(70), chord(80), chord(0)],
        ]
    )
    valid = ~torch.eye(3, dtype=torch.bool)
    hard, has = select_negatives(dist, valid, "hardest")
    semi, _ = select_negatives(dist, valid, "semi-hard")
    assert has.all()
    assert hard[0].tolist() == pytest.approx([chord(30), chord(10)], abs=1e-6)
    assert semi[0].tolist() == pytest.approx([chord(30), chord(60)], abs=1e-6)
    # Row 1: positive at 0, so every negative is farther; semi-hard = hardest = 50 deg.
    assert semi[1, 1] == pytest.approx(chord(50))
    assert hard[1, 1] == pytest.approx(chord(50))


def test_semi_hard_falls_back_to_hardest_when_no_negative_is_farther() -> None:
    dist = torch.tensor([[1.0, 0.5, 0.8], [0.1, 0.0, 0.3], [0.2, 0.4, 0.0]])
    valid = ~torch.eye(3, dtype=torch.bool)
    semi, _ = select_negatives(dist, valid, "semi-hard")
    assert semi[0, 1] == pytest.approx(0.5)


def test_group_members_are_never_negatives() -> None:
    dist = torch.tensor([[0.5, 0.1, 0.9], [0.1, 0.5, 0.9], [0.9, 0.9, 0.2]])
    groups = torch.tensor([7, 7, 3])
    valid = ~torch.eye(3, dtype=torch.bool) & (groups[:, None] != groups[None, :])
    neg, has = select_negatives(dist, valid, "hardest")
    assert neg[0, 1] == pytest.approx(0.9)  # 0.1 belongs to the same group
    assert has.all()


def test_loss_value_both_directions() -> None:
    # Image anchors are fine, text anchors are not: only one direction contributes.
    images = torch.tensor([unit(0), unit(90)])
    texts = torch.tensor([unit(0), unit(20)])
    loss_fn = CrossModalTripletLoss(margin=0.2, mining="hardest")
    loss, stats = loss_fn(images, texts, return_stats=True)
    # image 0: pos 0, neg text1 at 20 -> 0.2 - chord(20) < 0 -> 0
    # image 1: pos text1 at 70, neg text0 at 90 -> 0.2 + chord(70) - chord(90)
    # text 0:  pos image0 at 0, neg image1 at 90 -> 0
    # text 1:  pos image1 at 70, neg image0 at 20 -> 0.2 + chord(70) - chord(20)
    expected = [0.0, 0.2 + chord(70) - chord(90), 0.0, 0.2 + chord(70) - chord(20)]
    expected = [max(0.0, e) for e in expected]
    assert float(loss) == pytest.approx(sum(expected) / 4, abs=1e-5)
    assert stats["active"] == pytest.approx(sum(e > 0 for e in expected) / 4)


def test_margin_controls_active_triplets() -> None:
    images = torch.tensor([unit(0), unit(180)])
    texts = torch.tensor([unit(0), unit(180)])
    assert float(CrossModalTripletLoss(margin=0.4)(images, texts)) == pytest.approx(0.0, abs=1e-5)
    # Negatives are 2.0 away, so only a margin above 2 is violated.
    assert float(CrossModalTripletLoss(margin=2.5)(images, texts)) == pytest.approx(0.5, abs=1e-4)


def test_all_in_one_group_gives_zero_loss_with_graph() -> None:
    images = torch.nn.functional.normalize(torch.randn(3, 4), dim=1).requires_grad_()
    texts = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    loss = CrossModalTripletLoss()(images, texts, torch.tensor([1, 1, 1]))
    loss.backward()
    assert loss.item() == 0.0


def test_gradient_finite_for_identical_pairs() -> None:
    x = torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    images = x.clone().requires_grad_()
    loss = CrossModalTripletLoss(margin=2.0, mining="semi-hard")(images, x.clone())
    loss.backward()
    assert torch.isfinite(images.grad).all()
    assert loss.item() > 0


def test_unknown_mining_rejected() -> None:
    with pytest.raises(ValueError):
        CrossModalTripletLoss(mining="random")
