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

import copy
import hashlib
import importlib
import os
import tempfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch import nn

from vistext.encoders.base import ImageEncoder, ImageFeatures, Preprocessing
from vistext.errors import ModelError
from vistext.paths import atomic_write, cache_dir
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


# ---- running a backbone (or part of one) through ONNX Runtime -------------------------------------------------


def _state_key(module: nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class _Scored(nn.Module):
    """Backbone -> head -> sigmoid: the whole tagger as one graph (pixels in, probabilities out)."""

    def __init__(self, backbone: TrainableBackbone, head: nn.Module | None, grid: bool) -> None:
        super().__init__()
        self.backbone, self.head, self.grid = backbone, head, grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone.feature_map(x) if self.grid else self.backbone(x)
        return features if self.head is None else torch.sigmoid(self.head(features))


def export_onnx(module: nn.Module, size: int, path: Path | None = None) -> bytes:
    """Export ``module`` (pixels (N, 3, size, size) -> one output) to ONNX; returns the file's bytes and, with
    ``path``, also writes it there atomically."""
    module = copy.deepcopy(module).eval()
    dummy = torch.zeros(2, 3, size, size)
    with tempfile.TemporaryDirectory(prefix="vistext-onnx-") as folder:
        tmp = Path(folder) / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(
                module,
                (dummy,),
                str(tmp),
                input_names=["pixels"],
                output_names=["output"],
                dynamic_axes={"pixels": {0: "n"}, "output": {0: "n"}},
                opset_version=17,
                dynamo=False,
            )
        data = tmp.read_bytes()
    if path is not None:
        atomic_write(path, data)
    return data


def export_tagger_network(backbone: TrainableBackbone, head: nn.Module, grid: bool = False) -> bytes:
    """The ONNX bytes of backbone + tag head + sigmoid (what a tagger directory's ``model.onnx`` holds)."""
    return export_onnx(_Scored(backbone, head, grid), backbone.preprocessing.size)


class ModuleEncoder(ImageEncoder):
    """Any torch module over pixels, run as an ``ImageEncoder`` through ONNX Runtime: its (single) output is
    returned as ``pooled`` (whatever its shape), so ``vistext.features.encode_files`` can batch, parallelise
    and cache it. The name includes a hash of the weights: different weights never share a feature cache."""

    def __init__(self, module: nn.Module, name: str, preprocessing: Preprocessing, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.name = f"{name.replace(':', '-').replace('/', '-')}-{_state_key(module)}"
        self.preprocessing = preprocessing
        path = cache_dir("backbones") / f"{self.name}.onnx"
        if not path.is_file():
            export_onnx(module, preprocessing.size, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.dim = int(np.prod(self._session.get_outputs()[0].shape[1:]))

    def encode(self, batch: np.ndarray, grid: bool = False) -> ImageFeatures:
        output = self._session.run(None, {"pixels": np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return ImageFeatures(pooled=output)


class AugmentViews:
    """``views(image) -> [image, augmented...]``: the original plus ``n_views - 1`` random resized crops
    (50-100% of the area), horizontal flips and mild brightness/contrast jitter.

    The randomness is seeded from the image's content, so a view set is reproducible and thread-safe, and
    the ``name`` (used in feature cache keys) says exactly which views these are.
    """

    def __init__(self, n_views: int = 4, seed: int = 0) -> None:
        if n_views < 1:
            raise ModelError(f"n_views must be at least 1, got {n_views}")
        self.n_views, self.seed = n_views, seed
        self.name = f"augment{n_views}-seed{seed}-v1"

    def __call__(self, image: Image.Image) -> list[Image.Image]:
        thumb = np.asarray(image.resize((8, 8)), dtype=np.uint8).tobytes()
        rng = np.random.default_rng([self.seed, zlib.crc32(thumb)])
        views = [image]
        width, height = image.size
        for _ in range(self.n_views - 1):
            area = rng.uniform(0.5, 1.0) * width * height
            ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            w = int(min(width, round(np.sqrt(area * ratio))))
            h = int(min(height, round(np.sqrt(area / ratio))))
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            view = image.crop((left, top, left + w, top + h))
            if rng.random() < 0.5:
                view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            view = ImageEnhance.Brightness(view).enhance(rng.uniform(0.8, 1.2))
            view = ImageEnhance.Contrast(view).enhance(rng.uniform(0.8, 1.2))
            views.append(view)
        return views
