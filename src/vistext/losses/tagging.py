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


def _effective_number(counts: np.ndarray, beta: float) -> np.ndarray:
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    return (1.0 - np.power(beta, counts)) / (1.0 - beta)


def class_balanced_weights(
    label_counts: np.ndarray, n_samples: int, beta: float = 0.999
) -> tuple[np.ndarray, np.ndarray]:
    """Per-tag (positive, negative) weights from the "effective number of samples" (Cui et al., CVPR 2019).

    Each tag is a binary problem whose two classes, present (``n`` images) and absent (``n_samples - n``),
    count as ``(1 - beta**n) / (1 - beta)`` effective samples; each class is weighted by the inverse, and each
    tag's pair is normalised to sum to 2. So a rare tag's few positives weigh much more than its negatives.
    Scaling a tag's whole loss by one number would do nothing under Adam (it normalises the gradient scale of
    that tag's weights away); only the balance between positives and negatives changes what is learned.
    """
    counts = np.asarray(label_counts, dtype=np.float64)
    w_pos = 1.0 / _effective_number(counts, beta)
    w_neg = 1.0 / _effective_number(n_samples - counts, beta)
    total = (w_pos + w_neg) / 2.0
    return (w_pos / total).astype(np.float32), (w_neg / total).astype(np.float32)


def class_balanced_bce(
    logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor, neg_weight: torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy with per-tag positive and negative weights, summed over tags, averaged over images."""
    targets = targets.to(logits.dtype)
    per_entry = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    weights = targets * pos_weight + (1 - targets) * neg_weight
    return (per_entry * weights).sum() / logits.shape[0]


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
    pos, neg = (torch.from_numpy(w) for w in class_balanced_weights(label_counts, n_samples, beta))

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return class_balanced_bce(logits, targets, pos, neg)

    return loss


@TAG_LOSSES.register("bce")
def _make_bce(label_counts: np.ndarray | None = None, n_samples: int = 0) -> TagLoss:
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="sum") / len(logits)

    return loss


def make_tag_loss(name: str, label_counts: np.ndarray | None = None, n_samples: int = 0, **settings: float) -> TagLoss:
    """The registered tagging loss ``name`` ("asl", "cb-bce", "bce") set up for a training set."""
    return TAG_LOSSES.get(name)(label_counts=label_counts, n_samples=n_samples, **settings)
