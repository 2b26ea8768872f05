"""Trainable backbones (models/backbones.py): every registered backbone with random weights (shapes, no NaN, the
split into a frozen prefix and a trainable top, gradients), third-party families, and reproducible augmented views."""

from __future__ import annotations

import pytest
import torch

from vistext.errors import ModelError
from vistext.models.backbones import BACKBONES, available_families, create_backbone


@pytest.mark.parametrize("name", sorted(BACKBONES.names()))
def test_every_registered_backbone_random_weights(name: str) -> None:
    backbone = create_backbone(name, pretrained=False)
    size = min(backbone.preprocessing.size, 96)  # fully convolutional: a small input keeps the test fast
    x = torch.randn(2, 3, size, size)
    backbone.eval()
    out = backbone(x)
    assert out.shape == (2, backbone.dim) and torch.isfinite(out).all()
    prefix, top = backbone.split(2)
    with torch.no_grad():
        assert torch.allclose(top(prefix(x)), out, atol=1e-5)
    top.train()
    top(prefix(x).detach()).sum().backward()
    grads = [p.grad for p in top.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("family", ["torchvision:resnet18", "timm:resnet10t", "open_clip:RN50"])
def test_third_party_backbones(family: str) -> None:
    package = family.split(":")[0]
    if package not in available_families():
        with pytest.raises(ModelError, match="not installed"):
            create_backbone(family, pretrained=False)
        return
    backbone = create_backbone(family, pretrained=False)
    size = backbone.preprocessing.size
    assert backbone(torch.randn(1, 3, size, size)).shape == (1, backbone.dim)


def test_unknown_backbone() -> None:
    with pytest.raises(ModelError, match="unknown backbone"):
        create_backbone("no-such-net")
