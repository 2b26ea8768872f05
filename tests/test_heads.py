"""Image heads (models/heads.py): every registered head on random features (shape, no NaN, gradients reach every
trainable parameter and the grid exactly when the head reads it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vistext.encoders import ImageFeatures
from vistext.models.heads import IMAGE_HEADS, head_needs_grid


def _features(n: int, seed: int = 0) -> ImageFeatures:
    rng = np.random.default_rng(seed)
    return ImageFeatures(
        pooled=rng.random((n, 1280), dtype=np.float32), grid=rng.random((n, 1280, 7, 7), dtype=np.float32)
    )


@pytest.mark.parametrize("name", IMAGE_HEADS.names())
def test_every_image_head(name: str) -> None:
    head = IMAGE_HEADS.create(name, in_dim=1280, out_dim=32, hidden=64, width=48)
    f = _features(3)
    pooled = torch.from_numpy(f.pooled).requires_grad_(True)
    grid = torch.from_numpy(f.grid).requires_grad_(True)
    out = head(pooled, grid)
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)
    assert (grid.grad is not None) == bool(head.needs_grid) == head_needs_grid(name)  # the registry knows it
