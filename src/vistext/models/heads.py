"""Trainable heads on top of frozen encoders: projections into the joint space, learned grid pooling, and
the tagger's multi-label head.

Joint image heads are registered by name in ``IMAGE_HEADS`` and take either the pooled backbone vector (N, D)
or the feature grid (N, D, h, w); ``needs_grid`` says which, and ``head_needs_grid(name)`` reads it from the
registry without building a head. Every head returns un-normalised (N, out_dim) vectors; the joint model
normalises them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vistext.registry import Registry

IMAGE_HEADS: Registry[nn.Module] = Registry("image head")


class Projection(nn.Module):
    """A linear map plus a residual MLP (as in VSE-infinity): the linear part trains fast, the MLP adds capacity.

    ``hidden=0`` gives a plain linear projection.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 1024, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.linear = nn.Linear(in_dim, out_dim)
        self.mlp: nn.Module | None = None
        if hidden > 0:
            self.mlp = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        out = self.linear(x)
        if self.mlp is not None:
            out = out + self.mlp(x)
        return out


class GeneralizedPooling(nn.Module):
    """GPO (Chen et al. 2021, VSE-infinity): per feature dimension, sort the values over the positions and take
    a learned weighted sum. Max pooling and mean pooling are special cases; the weights are learned."""

    def __init__(self, positions: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(positions))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, P, D) -> (N, D)"""
        ordered = tokens.sort(dim=1, descending=True).values
        weights = torch.softmax(self.logits, dim=0)
        return torch.einsum("npd,p->nd", ordered, weights)


class AttentionPooling(nn.Module):
    """Learned queries attend over the grid positions (multi-head), as in CLIP's attention pool."""

    def __init__(self, dim: int, heads: int = 8) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, dim) * dim**-0.5)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, P, D) -> (N, D): the query starts from the mean token so the head begins as mean pooling."""
        query = self.query + tokens.mean(dim=1, keepdim=True)
        out, _ = self.attn(query, tokens, tokens, need_weights=False)
        return out[:, 0]


class PooledHead(nn.Module):
    """Projection of the backbone's global-average-pooled vector."""

    needs_grid = False

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 1024, dropout: float = 0.1, **_: object) -> None:
        super().__init__()
        self.proj = Projection(in_dim, out_dim, hidden, dropout)

    def forward(self, pooled: torch.Tensor, grid: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(pooled)


class GridHead(nn.Module):
    """Learned pooling over the feature grid: tokens -> per-position linear reduction -> pooling -> projection.

    ``pooling`` is ``"gpo"`` (sorted weighted sum) or ``"attention"``; the global mean is added back so the head
    never loses what the plain pooled vector knows.
    """

    needs_grid = True

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int = 1024,
        dropout: float = 0.1,
        pooling: str = "gpo",
        width: int = 768,
        positions: int = 49,
        **_: object,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.reduce = nn.Linear(in_dim, width)
        if pooling == "gpo":
            self.pool: nn.Module = GeneralizedPooling(positions)
        elif pooling == "attention":
            self.pool = AttentionPooling(width)
        else:
            raise ValueError(f"unknown grid pooling {pooling!r}; known: gpo, attention")
        self.proj = Projection(width + in_dim, out_dim, hidden, dropout)

    def forward(self, pooled: torch.Tensor, grid: torch.Tensor | None = None) -> torch.Tensor:
        if grid is None:
            raise ValueError("this image head needs the feature grid (encode with grid=True)")
        tokens = grid.flatten(2).transpose(1, 2).float()  # (N, P, D)
        local = self.pool(F.gelu(self.reduce(self.norm(tokens))))
        return self.proj(torch.cat([local, pooled.float()], dim=1))


IMAGE_HEADS.register("pooled-mlp")(PooledHead)


@IMAGE_HEADS.register("grid-gpo")
class GridGPOHead(GridHead):
    """``GridHead`` with generalised pooling (GPO)."""

    def __init__(self, in_dim: int, out_dim: int, **kwargs: object) -> None:
        kwargs.pop("pooling", None)
        super().__init__(in_dim, out_dim, pooling="gpo", **kwargs)  # type: ignore[arg-type]


@IMAGE_HEADS.register("grid-attn")
class GridAttentionHead(GridHead):
    """``GridHead`` with attention pooling."""

    def __init__(self, in_dim: int, out_dim: int, **kwargs: object) -> None:
        kwargs.pop("pooling", None)
        super().__init__(in_dim, out_dim, pooling="attention", **kwargs)  # type: ignore[arg-type]


def head_needs_grid(name: str) -> bool:
    """Whether the registered image head ``name`` reads the feature grid (asks the registry; builds nothing)."""
    return bool(getattr(IMAGE_HEADS.get(name), "needs_grid", False))


# ---- the tagger's head ----------------------------------------------------------------------------------


class TagHead(nn.Module):
    """A tagger's trainable head; ``vistext.models.tagger.head_logits`` is its NumPy twin (same parameter names).

    ``linear``/``mlp`` read pooled features; ``csra`` (class-specific residual attention, Zhu & Wu 2021) scores
    every grid position per tag and adds ``lam`` x the best position to the average, so a small object that
    fills a few cells of the 7x7 grid still counts.
    """

    def __init__(
        self,
        kind: str,
        in_dim: int,
        n_tags: int,
        hidden: int = 0,
        dropout: float = 0.2,
        mean: np.ndarray | None = None,
        std: np.ndarray | None = None,
        prior: np.ndarray | None = None,
        lam: float = 0.1,
    ) -> None:
        super().__init__()
        self.kind, self.lam = kind, float(lam)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        mean = np.zeros(in_dim) if mean is None else mean
        std = np.ones(in_dim) if std is None else std
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.dropout = nn.Dropout(dropout)
        width = in_dim
        if kind == "mlp":
            self.hidden = nn.Linear(in_dim, hidden)
            width = hidden
        self.classifier = nn.Linear(width, n_tags)
        if prior is not None:  # start at the tag frequencies: no wasted epochs unlearning p = 0.5
            p = np.clip(np.asarray(prior, dtype=np.float64), 1e-4, 1 - 1e-4)
            bias = np.log(p / (1 - p)) / (1 + self.lam if kind == "csra" else 1)
            with torch.no_grad():
                self.classifier.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "csra":
            x = x.flatten(2).transpose(1, 2)  # (N, positions, D)
            scores = self.classifier(self.dropout((x - self.mean) / self.std))
            return scores.mean(dim=1) + self.lam * scores.amax(dim=1)
        if x.ndim == 4:
            x = x.mean(dim=(2, 3))
        x = self.dropout((x - self.mean) / self.std)
        if self.kind == "mlp":
            x = torch.relu(self.hidden(x))
        return self.classifier(x)
