"""Trainable PyTorch image backbones for taggers, registered by name.

A backbone is a list of *stages* run in order (stem, blocks, head convolution...) followed by global average
pooling, so training can split it anywhere: ``split(n_top)`` gives a frozen prefix and the trainable top
``n_top`` stages. The prefix's output can then be computed once and cached, and fine-tuning only ever runs the
top stages, which is what makes fine-tuning practical on a CPU.

Names: ``efficientnet-lite0`` (bundled weights) and anything registered with ``BACKBONES.register``; plus
``torchvision:NAME``, ``timm:NAME`` and ``open_clip:NAME``, which build only when that package is importable
(and, for ``pretrained=True``, when its weights are already on disk: nothing is downloaded here).
Third-party models whose forward pass is not a simple chain of children are wrapped as one stage, so
fine-tuning them trains the whole network.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from vistext.encoders.base import Preprocessing
from vistext.errors import ModelError
from vistext.registry import Registry

BACKBONES: Registry[TrainableBackbone] = Registry("backbone")
FAMILIES = ("torchvision", "timm", "open_clip")
# per-channel ImageNet statistics folded into the scalar mean/std the Preprocessing dataclass supports
IMAGENET_PREPROCESSING = Preprocessing(size=224, mean=0.449, std=0.226)


class GlobalPool(nn.Module):
    """Average a (N, C, h, w) feature map to (N, C); pass (N, D) vectors through unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if x.ndim == 4 else x


class TrainableBackbone(nn.Module):
    """Stages applied in order, then global pooling: ``forward(pixels) -> (N, dim)`` pooled features."""

    def __init__(self, name: str, stages: Sequence[nn.Module], dim: int, preprocessing: Preprocessing) -> None:
        super().__init__()
        if not stages:
            raise ModelError(f"backbone {name!r} has no stages")
        self.name = name
        self.stages = nn.ModuleList(stages)
        self.dim = dim
        self.preprocessing = preprocessing
        self.pool = GlobalPool()

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_map(x))

    def split(self, n_top: int) -> tuple[nn.Module, nn.Module]:
        """(frozen prefix, trainable top) with ``top(prefix(x)) == forward(x)``; the top includes pooling."""
        n_top = max(1, min(int(n_top), self.n_stages))
        cut = self.n_stages - n_top
        prefix = nn.Sequential(*self.stages[:cut]) if cut else nn.Identity()
        return prefix, nn.Sequential(*self.stages[cut:], self.pool)


# ---- the bundled EfficientNet-Lite0 --------------------------------------------------------------------------


class _EfficientNetStem(nn.Module):
    def __init__(self, net: Any) -> None:
        super().__init__()
        self.conv, self.bn, self.act = net._conv_stem, net._bn0, net._swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class _EfficientNetBlock(nn.Module):
    """One MBConv block with its stochastic-depth rate (only active in training mode)."""

    def __init__(self, block: nn.Module, drop_connect_rate: float) -> None:
        super().__init__()
        self.block = block
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, drop_connect_rate=self.drop_connect_rate)


class _EfficientNetHead(nn.Module):
    def __init__(self, net: Any) -> None:
        super().__init__()
        self.conv, self.bn, self.act = net._conv_head, net._bn1, net._swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


@BACKBONES.register("efficientnet-lite0")
def efficientnet_lite0(pretrained: bool = True) -> TrainableBackbone:
    """The bundled EfficientNet-Lite0: 18 stages (stem, 16 MBConv blocks, head conv), 1280-d features."""
    from vistext.encoders.efficientnet import FEATURE_DIM, PREPROCESSING, build_torch_backbone

    net: Any = build_torch_backbone(pretrained=pretrained)
    rate = float(net._global_params.drop_connect_rate or 0.0)
    blocks = [_EfficientNetBlock(b, rate * i / len(net._blocks)) for i, b in enumerate(net._blocks)]
    stages = [_EfficientNetStem(net), *blocks, _EfficientNetHead(net)]
    return TrainableBackbone("efficientnet-lite0", stages, FEATURE_DIM, PREPROCESSING)


# ---- third-party families (optional packages) ---------------------------------------------------------------


def _require(package: str, name: str) -> object:
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ModelError(f"backbone {name!r} needs the '{package}' package, which is not installed") from None


def _probe_dim(stages: Sequence[nn.Module], size: int) -> int:
    with torch.no_grad():
        x = torch.zeros(1, 3, size, size)
        for stage in stages:
            x = stage(x)
        return int(GlobalPool()(x).shape[1])


class _Whole(nn.Module):
    """A model whose forward is not a chain of children, used as a single stage through ``call``."""

    def __init__(self, model: nn.Module, call: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self._call = call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._call(self.model, x)


def _torchvision(model_name: str, pretrained: bool) -> TrainableBackbone:
    models = _require("torchvision.models", f"torchvision:{model_name}")
    try:
        model = models.get_model(model_name, weights="DEFAULT" if pretrained else None)  # type: ignore[attr-defined]
    except Exception as error:  # torchvision raises ValueError/RuntimeError/OSError for names and weights
        raise ModelError(f"cannot build torchvision:{model_name}: {error}") from None
    if all(hasattr(model, f"layer{i}") for i in range(1, 5)):  # the ResNet family
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        stages: list[nn.Module] = [stem, model.layer1, model.layer2, model.layer3, model.layer4]
    elif isinstance(getattr(model, "features", None), nn.Sequential):  # MobileNet, EfficientNet, ConvNeXt, VGG...
        stages = list(model.features)
    else:
        stages = [_Whole(model, lambda m, x: m(x))]
    name = f"torchvision:{model_name}"
    return TrainableBackbone(name, stages, _probe_dim(stages, 224), IMAGENET_PREPROCESSING)


def _timm(model_name: str, pretrained: bool) -> TrainableBackbone:
    timm = _require("timm", f"timm:{model_name}")
    try:
        model = timm.create_model(model_name, pretrained=pretrained, num_classes=0)  # type: ignore[attr-defined]
    except Exception as error:  # timm raises RuntimeError for unknown names and missing weights alike
        raise ModelError(f"cannot build timm:{model_name}: {error}") from None
    config = getattr(model, "pretrained_cfg", {}) or {}
    size = int((config.get("input_size") or (3, 224, 224))[-1])
    mean = float(sum(config.get("mean", (0.485, 0.456, 0.406))) / 3)
    std = float(sum(config.get("std", (0.229, 0.224, 0.225))) / 3)
    stages = [_Whole(model, lambda m, x: m(x))]
    return TrainableBackbone(f"timm:{model_name}", stages, int(model.num_features), Preprocessing(size, mean, std))


def _open_clip(model_name: str, pretrained: bool) -> TrainableBackbone:
    open_clip = _require("open_clip", f"open_clip:{model_name}")
    arch, _, tag = model_name.partition("/")
    try:
        model = open_clip.create_model(arch, pretrained=(tag or None) if pretrained else None)  # type: ignore[attr-defined]
    except Exception as error:  # open_clip raises RuntimeError for unknown names and missing weights alike
        raise ModelError(f"cannot build open_clip:{model_name}: {error}") from None
    visual = model.visual
    size = visual.image_size[0] if isinstance(visual.image_size, tuple) else int(visual.image_size)
    mean = float(sum(getattr(visual, "image_mean", None) or (0.481, 0.458, 0.408)) / 3)
    std = float(sum(getattr(visual, "image_std", None) or (0.269, 0.261, 0.276)) / 3)
    stages = [_Whole(visual, lambda m, x: m(x))]
    return TrainableBackbone(f"open_clip:{model_name}", stages, int(visual.output_dim), Preprocessing(size, mean, std))


_FAMILY_BUILDERS: dict[str, Callable[[str, bool], TrainableBackbone]] = {
    "torchvision": _torchvision,
    "timm": _timm,
    "open_clip": _open_clip,
}


def create_backbone(name: str, pretrained: bool = True) -> TrainableBackbone:
    """Build the backbone ``name``: a registered name or ``torchvision:NAME``, ``timm:NAME``, ``open_clip:NAME``.

    ``pretrained=False`` gives random weights (tests, architecture checks).
    """
    family, sep, model_name = name.partition(":")
    if sep and family in _FAMILY_BUILDERS and name not in BACKBONES:
        if not model_name:
            raise ModelError(f"backbone {name!r} names no model after '{family}:'")
        return _FAMILY_BUILDERS[family](model_name, pretrained)
    return BACKBONES.create(name, pretrained=pretrained)


def available_families() -> list[str]:
    """The optional backbone families whose package is importable here."""
    found = []
    for family in FAMILIES:
        try:
            importlib.import_module(family)
        except ImportError:
            continue
        found.append(family)
    return found
