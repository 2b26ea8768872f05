"""Trainable heads on top of frozen encoders: projections into the joint space and learned grid pooling.

Image heads are registered by name in ``IMAGE_HEADS`` and take either the pooled backbone vector (N, D)
or the feature grid (N, D, h, w); ``needs_grid`` says which. Every head returns un-normalised (N, out_dim)
vectors; the joint model normalises them.
"""

from __future__ import annotations

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


@IMAGE_HEADS.register("pooled-mlp")
def _pooled_mlp(**kwargs: object) -> nn.Module:
    return PooledHead(**kwargs)  # type: ignore[arg-type]


@IMAGE_HEADS.register("grid-gpo")
def _grid_gpo(**kwargs: object) -> nn.Module:
    return GridHead(pooling="gpo", **kwargs)  # type: ignore[arg-type]


@IMAGE_HEADS.register("grid-attn")
def _grid_attn(**kwargs: object) -> nn.Module:
    return GridHead(pooling="attention", **kwargs)  # type: ignore[arg-type]
