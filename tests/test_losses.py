"""The losses package on hand-made tensors with answers worked out by hand: every registered ranking loss
(losses/ranking.py) and the tag losses (losses/tagging.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vistext.errors import ModelError, UsageError
from vistext.losses.ranking import LOSSES, get_loss
from vistext.losses.tagging import asymmetric_loss, class_balanced_weights, make_tag_loss

# Two images and two captions in 2-d: image 0 = (1,0), image 1 = (0,1);
# caption 0 = (cos 30deg, sin 30deg) fits image 0 best; caption 1 = (0,1) is exactly image 1.
C30, S30 = math.cos(math.pi / 6), math.sin(math.pi / 6)
IMAGES = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
TEXTS = torch.tensor([[C30, S30], [0.0, 1.0]])
# sim[i, j] = image i . caption j = [[C30, 0], [S30, 1]]


def test_registry_names() -> None:
    assert LOSSES.names() == ["hinge-sum", "infonce", "triplet-semihard", "vse-hardest"]
    with pytest.raises(ModelError, match="unknown loss 'nope'.*infonce"):
        get_loss("nope")


def test_hinge_sum_by_hand() -> None:
    # i2t: image0 vs caption1: 0.2 + 0 - C30 < 0 -> 0; image1 vs caption0: 0.2 + S30 - 1 < 0 -> 0
    # t2i: caption0 vs image1: 0.2 + S30 - C30 = 0.2+0.5-0.866 < 0 -> 0; caption1 vs image0: 0.2 + 0 - 1 -> 0
    assert get_loss("hinge-sum")(IMAGES, TEXTS).item() == pytest.approx(0.0)
    # margin 0.5: t2i caption0 vs image1 = 0.5 + 0.5 - 0.866 = 0.134; image1 vs caption0: 0.5+0.5-1 = 0
    assert get_loss("hinge-sum")(IMAGES, TEXTS, margin=0.5).item() == pytest.approx((0.5 + 0.5 - C30) / 2)


def test_hinge_sum_counts_every_negative_and_vse_only_the_hardest() -> None:
    images = torch.eye(3)
    texts = torch.zeros(3, 3)  # every caption is equally (un)like every image: every hinge = margin
    assert get_loss("hinge-sum")(images, texts, margin=0.2).item() == pytest.approx(2 * 3 * 2 * 0.2 / 3)
    assert get_loss("vse-hardest")(images, texts, margin=0.2).item() == pytest.approx(2 * 3 * 0.2 / 3)


def test_vse_hardest_by_hand() -> None:
    sim = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.5, 0.6], [0.0, 0.0, 0.7]])
    images = torch.eye(3)
    texts = sim.T.contiguous()  # images @ texts.T == sim
    # i2t hardest: row0 max(0.8,0.1)=0.8 -> 0.2+0.8-0.9=0.1; row1 0.6 -> 0.3; row2 0 -> 0
    # t2i hardest: col0 max(0.2,0)=0.2 -> 0.2+0.2-0.9<0 -> 0; col1 0.8 -> 0.5; col2 0.6 -> 0.1
    expected = (0.1 + 0.3 + 0.0 + 0.0 + 0.5 + 0.1) / 3
    assert get_loss("vse-hardest")(images, texts, margin=0.2).item() == pytest.approx(expected)


def test_triplet_semihard_picks_the_hardest_negative_below_the_positive() -> None:
    sim = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.5, 0.6], [0.0, 0.0, 0.7]])
    images, texts = torch.eye(3), sim.T.contiguous()
    # i2t: row0 negs (0.8, 0.1) below 0.9 -> 0.8: 0.2+0.8-0.9 = 0.1
    #      row1 negs (0.2, 0.6) pos 0.5: semi-hard (below) = 0.2 -> 0.2+0.2-0.5 < 0 -> 0
    #      row2 negs (0, 0) -> 0
    # t2i: col0 negs (0.2, 0) pos 0.9 -> 0.2 -> 0; col1 negs (0.8, 0) pos 0.5: below -> 0.0 -> 0
    #      col2 negs (0.1, 0.6) pos 0.7 -> 0.6: 0.2+0.6-0.7 = 0.1
    expected = (0.1 + 0 + 0) / 3 + (0 + 0 + 0.1) / 3
    assert get_loss("triplet-semihard")(images, texts, margin=0.2).item() == pytest.approx(expected)


def test_triplet_semihard_falls_back_to_the_easiest_violating_negative() -> None:
    sim = torch.tensor([[0.1, 0.5, 0.3], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    images, texts = torch.eye(3), sim.T.contiguous()
    # row0 pos 0.1, negs 0.5 and 0.3 both above -> the easiest violator 0.3: 0.2+0.3-0.1 = 0.4
    # col0 pos 0.1, negs 0 and 0 below -> 0: 0.2+0-0.1 = 0.1; col1/col2 pos 1 -> 0
    expected = 0.4 / 3 + 0.1 / 3
    assert get_loss("triplet-semihard")(images, texts, margin=0.2).item() == pytest.approx(expected)


def test_infonce_by_hand() -> None:
    scale = 10.0
    logits = scale * (IMAGES @ TEXTS.T)
    row = -(F.log_softmax(logits, dim=1).diag().mean())
    col = -(F.log_softmax(logits, dim=0).diag().mean())
    got = get_loss("infonce")(IMAGES, TEXTS, scale=scale).item()
    assert got == pytest.approx(0.5 * (row + col).item())
    # the same worked out by hand: logits = 10 * [[C30, 0], [S30, 1]]
    a, b = 10 * C30, 10 * S30
    rows = math.log1p(math.exp(-a)) + math.log1p(math.exp(b - 10))
    cols = math.log1p(math.exp(b - a)) + math.log1p(math.exp(-10))
    assert got == pytest.approx(0.5 * (rows / 2 + cols / 2), rel=1e-4)


def test_infonce_temperature_is_learnable() -> None:
    scale = torch.tensor(5.0, requires_grad=True)
    get_loss("infonce")(IMAGES, TEXTS, scale=scale).backward()
    assert scale.grad is not None and scale.grad.item() < 0  # sharper logits lower the loss when pairs rank right


@pytest.mark.parametrize("name", sorted(LOSSES.names()))
def test_same_image_captions_are_not_negatives(name: str) -> None:
    # rows 0 and 1 are two captions of one image: without pair_ids they punish each other
    images = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=1)
    texts = F.normalize(torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0]]), dim=1)
    loss = get_loss(name)
    with_ids = loss(images, texts, scale=20.0, pair_ids=torch.tensor([0, 0, 1]))
    without = loss(images, texts, scale=20.0)
    # semi-hard mining skips a negative scored level with the positive, so there the two may tie
    assert with_ids.item() < without.item() or (name == "triplet-semihard" and with_ids.item() <= without.item())
    assert with_ids.item() == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("name", sorted(LOSSES.names()))
def test_perfect_and_gradients(name: str) -> None:
    images = torch.eye(4, requires_grad=True)
    texts = torch.eye(4)
    assert get_loss(name)(images, texts, scale=50.0).item() == pytest.approx(0.0, abs=1e-4)
    noisy = F.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=1).requires_grad_(True)
    out = get_loss(name)(noisy, F.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(1)), dim=1))
    out.backward()
    assert torch.isfinite(out) and noisy.grad is not None and noisy.grad.abs().sum() > 0


# ---- tag losses -----------------------------------------------------------------------------------------------


def test_asymmetric_loss_reduces_to_bce_and_discounts_easy_negatives() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / 2
    plain = asymmetric_loss(logits, targets, gamma_neg=0, gamma_pos=0, clip=0)
    assert plain.item() == pytest.approx(bce.item(), rel=1e-5)
    # an easy negative (p = sigmoid(-3) < clip) costs nothing; a confident wrong negative still costs
    easy = asymmetric_loss(torch.tensor([[-3.0]]), torch.tensor([[0.0]]))
    hard = asymmetric_loss(torch.tensor([[3.0]]), torch.tensor([[0.0]]))
    assert easy.item() == 0.0 and hard.item() > 0.5
    assert make_tag_loss("asl")(logits, targets).item() < bce.item()


def test_class_balanced_weights() -> None:
    pos, neg = class_balanced_weights(np.array([1000, 100, 10, 1]), 2000, beta=0.999)
    assert np.allclose(pos + neg, 2.0)
    assert list(np.argsort(pos)) == [0, 1, 2, 3]  # rarer tags: positives weigh more
    assert pos[3] / neg[3] > 100 and pos[0] / neg[0] < 2
    loss = make_tag_loss("cb-bce", np.array([1000, 100, 10, 1]), 2000)
    # all-positive targets at p = 0.5: each tag costs log 2 times its positive weight
    assert loss(torch.zeros(2, 4), torch.ones(2, 4)).item() == pytest.approx(np.log(2) * pos.sum(), rel=1e-5)
    with pytest.raises(UsageError):
        make_tag_loss("cb-bce")
    with pytest.raises(ModelError, match="known"):
        make_tag_loss("nope")
