"""Image–text ranking losses, registered by name. Each is a pure function of two embedding batches.

Every loss takes ``images`` (B, d) and ``texts`` (B, d), both L2-normalised, where row ``i`` of each is a
matching pair and every other row in the batch is a negative, plus ``scale`` (a logit scale, used by the
softmax losses) and the loss's own keyword settings. It returns a scalar tensor. ``pair_ids`` (B,), when given,
marks rows that share an image (several captions of one photo in a batch): those are never negatives.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from vistext.registry import Registry

LossFn = Callable[..., torch.Tensor]
LOSSES: Registry[torch.Tensor] = Registry("loss")


def _positive_mask(n: int, pair_ids: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """(B, B) True where column j is a positive of row i (the diagonal, plus shared images)."""
    if pair_ids is None:
        return torch.eye(n, dtype=torch.bool, device=device)
    return pair_ids[:, None] == pair_ids[None, :]


def _hinge_costs(
    images: torch.Tensor, texts: torch.Tensor, margin: float, pair_ids: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hinge costs of every negative: (cost_i2t (B,B) image i vs caption j, cost_t2i (B,B) caption j vs image i)."""
    sim = images @ texts.T  # sim[i, j] = image i . caption j
    pos = sim.diag()
    mask = _positive_mask(sim.shape[0], pair_ids, sim.device)
    cost_i2t = (margin + sim - pos[:, None]).clamp(min=0).masked_fill(mask, 0.0)
    cost_t2i = (margin + sim - pos[None, :]).clamp(min=0).masked_fill(mask, 0.0)
    return cost_i2t, cost_t2i


@LOSSES.register("hinge-sum")
def hinge_sum(
    images: torch.Tensor,
    texts: torch.Tensor,
    scale: torch.Tensor | float = 1.0,
    margin: float = 0.2,
    pair_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The classic max-margin loss (Kiros et al. 2014): the sum of hinges over all in-batch negatives,
    both directions, averaged over the batch."""
    cost_i2t, cost_t2i = _hinge_costs(images, texts, margin, pair_ids)
    return (cost_i2t.sum() + cost_t2i.sum()) / images.shape[0]


@LOSSES.register("vse-hardest")
def vse_hardest(
    images: torch.Tensor,
    texts: torch.Tensor,
    scale: torch.Tensor | float = 1.0,
    margin: float = 0.2,
    pair_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """VSE++ (Faghri et al. 2018): only the hardest in-batch negative of each anchor counts, both directions."""
    cost_i2t, cost_t2i = _hinge_costs(images, texts, margin, pair_ids)
    return (cost_i2t.max(dim=1).values.sum() + cost_t2i.max(dim=0).values.sum()) / images.shape[0]


@LOSSES.register("triplet-semihard")
def triplet_semihard(
    images: torch.Tensor,
    texts: torch.Tensor,
    scale: torch.Tensor | float = 1.0,
    margin: float = 0.2,
    pair_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Triplet loss with semi-hard mining (Schroff et al. 2015), both directions.

    For each anchor the negative is the hardest one that is still *less* similar than the positive (inside the
    margin band); if there is none, the easiest negative that violates the ordering (closest above the positive).
    """
    sim = images @ texts.T
    pos = sim.diag()
    mask = _positive_mask(sim.shape[0], pair_ids, sim.device)
    total = sim.new_zeros(())
    for scores, anchor_pos in ((sim, pos[:, None]), (sim.T, pos[:, None])):
        negatives = scores.masked_fill(mask, float("-inf"))
        semi = negatives.masked_fill(negatives >= anchor_pos, float("-inf")).max(dim=1).values
        above = negatives.masked_fill(negatives < anchor_pos, float("inf")).min(dim=1).values
        # no negatives at all (batch of one image): fall back to the positive itself, a zero-cost triplet
        chosen = torch.where(torch.isfinite(semi), semi, torch.where(torch.isfinite(above), above, anchor_pos[:, 0]))
        total = total + (margin + chosen - anchor_pos[:, 0]).clamp(min=0).mean()
    return total


@LOSSES.register("infonce")
def infonce(
    images: torch.Tensor,
    texts: torch.Tensor,
    scale: torch.Tensor | float = 1.0,
    margin: float = 0.0,
    pair_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): cross-entropy over scaled cosine similarities, image->text and text->image.

    ``scale`` is the (learned) inverse temperature, passed in as a tensor so it trains with the model.
    Other positives of the same image are masked out of the denominators.
    """
    logits = scale * (images @ texts.T)
    n = logits.shape[0]
    if pair_ids is not None:
        others = _positive_mask(n, pair_ids, logits.device) & ~torch.eye(n, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(others, float("-inf"))
    target = torch.arange(n, device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def get_loss(name: str) -> LossFn:
    """The registered loss function called ``name`` (raises ModelError naming the known ones)."""
    return LOSSES.get(name)
