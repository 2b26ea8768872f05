"""Multi-label tagging losses for sigmoid heads, registered by name.

Each registered name maps to a factory ``make(label_counts, n_samples, **settings)`` that returns a loss function
``loss(logits, targets) -> scalar``, so losses that need the training set's label frequencies (class-balanced
BCE) and those that do not (asymmetric loss, plain BCE) share one interface.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from vistext.errors import UsageError
from vistext.registry import Registry

TagLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TAG_LOSSES: Registry[TagLoss] = Registry("tagging loss")


def asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Asymmetric loss (Ridnik et al., ICCV 2021), summed over tags and averaged over the batch.

    Negatives are down-weighted by ``p**gamma_neg`` and, below the probability margin ``clip``, ignored
    entirely (p is shifted down by ``clip``), which keeps the many easy negatives of a 300-tag vocabulary from
    swamping the few positives. With ``gamma_neg=gamma_pos=clip=0`` it is plain binary cross-entropy.
    """
    targets = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    p_neg = (p - clip).clamp(min=0) if clip > 0 else p
    loss_pos = targets * torch.log(p.clamp(min=eps))
    loss_neg = (1 - targets) * torch.log((1 - p_neg).clamp(min=eps))
    if gamma_pos > 0:
        loss_pos = loss_pos * (1 - p) ** gamma_pos
    if gamma_neg > 0:
        loss_neg = loss_neg * p_neg**gamma_neg
    return -(loss_pos + loss_neg).sum() / logits.shape[0]


def class_balanced_weights(label_counts: np.ndarray, n_samples: int, beta: float = 0.999) -> np.ndarray:
    """Per-tag positive weights from the "effective number of samples" (Cui et al., CVPR 2019).

    A tag seen ``n`` times counts as ``(1 - beta**n) / (1 - beta)`` samples; its weight is the inverse,
    normalised so the weights average to one over the tags. Rare tags get larger weights, bounded by beta.
    """
    counts = np.maximum(np.asarray(label_counts, dtype=np.float64), 1.0)
    effective = (1.0 - np.power(beta, counts)) / (1.0 - beta)
    weights = 1.0 / effective
    return (weights * len(weights) / weights.sum()).astype(np.float32)


def class_balanced_bce(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy where each tag's positive and negative terms are scaled by its class-balanced
    weight, summed over tags and averaged over the batch."""
    targets = targets.to(logits.dtype)
    per_entry = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (per_entry * pos_weight).sum() / logits.shape[0]


@TAG_LOSSES.register("asl")
def _make_asl(
    label_counts: np.ndarray | None = None,
    n_samples: int = 0,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
) -> TagLoss:
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return asymmetric_loss(logits, targets, gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip)

    return loss


@TAG_LOSSES.register("cb-bce")
def _make_cb_bce(label_counts: np.ndarray | None = None, n_samples: int = 0, beta: float = 0.999) -> TagLoss:
    if label_counts is None:
        raise UsageError("class-balanced BCE needs the training label counts")
    weights = torch.from_numpy(class_balanced_weights(label_counts, n_samples, beta))

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return class_balanced_bce(logits, targets, weights)

    return loss


@TAG_LOSSES.register("bce")
def _make_bce(label_counts: np.ndarray | None = None, n_samples: int = 0) -> TagLoss:
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="sum") / len(logits)

    return loss


def make_tag_loss(name: str, label_counts: np.ndarray | None = None, n_samples: int = 0, **settings: float) -> TagLoss:
    """The registered tagging loss ``name`` ("asl", "cb-bce", "bce") set up for a training set."""
    return TAG_LOSSES.get(name)(label_counts=label_counts, n_samples=n_samples, **settings)
