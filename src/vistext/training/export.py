"""The workshop's ONNX exporter: torch modules over pixels -> ONNX graphs (needs torch).

Every graph exported here takes ``pixels`` (N, 3, size, size) float32 with a dynamic batch axis and is exported
with the TorchScript exporter (``dynamo=False``) at opset 17. Used by training (a tagger with its own network
ships as one graph; ``ModuleEncoder`` runs a frozen backbone prefix through ONNX Runtime while training) and,
for EfficientNet-Lite0, as the reference that ``tests/test_graphs.py`` holds the runtime's torch-free graph to.
The runtime never imports this module: it builds its graphs from the weights (``vistext.encoders.onnx``).
"""

from __future__ import annotations

import copy
import hashlib
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vistext.encoders.base import ImageEncoder, ImageFeatures, Preprocessing
from vistext.encoders.efficientnet import PREPROCESSING, build_torch_backbone, three_outputs
from vistext.encoders.onnx import OPSET, open_session
from vistext.models.backbones import TrainableBackbone
from vistext.paths import atomic_write, cache_dir

INPUT = "pixels"


def export_onnx(
    module: nn.Module,
    size: int,
    path: Path | None = None,
    *,
    outputs: Sequence[str] = ("output",),
    batch: int = 2,
) -> bytes:
    """Export ``module`` (``pixels`` (N, 3, size, size) -> ``outputs``, all with a dynamic batch axis) and return
    the ONNX file's bytes; with ``path``, also write it there atomically (a half-written file is never left
    behind). The module is exported from a copy in eval mode, so the caller's stays as it was. ``batch`` is the
    traced example's batch size."""
    module = copy.deepcopy(module).eval()
    dummy = torch.zeros(batch, 3, size, size)
    with tempfile.TemporaryDirectory(prefix="vistext-onnx-") as folder:
        tmp = Path(folder) / "model.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's constant-folding notes are not the user's concern
            torch.onnx.export(
                module,
                (dummy,),
                str(tmp),
                input_names=[INPUT],
                output_names=list(outputs),
                dynamic_axes={name: {0: "n"} for name in (INPUT, *outputs)},
                opset_version=OPSET,
                dynamo=False,
            )
        data = tmp.read_bytes()
    if path is not None:
        atomic_write(path, data)
    return data


def export_efficientnet(path: Path, weights: str | Path | None = None) -> Path:
    """torch's export of the three-output EfficientNet-Lite0 (pooled, logits, grid) to ``path``."""
    export_onnx(
        three_outputs(build_torch_backbone(weights)),
        PREPROCESSING.size,
        path,
        outputs=("pooled", "logits", "grid"),
        batch=1,
    )
    return path


class _Scored(nn.Module):
    """Backbone -> head -> sigmoid: the whole tagger as one graph (pixels in, probabilities out)."""

    def __init__(self, backbone: TrainableBackbone, head: nn.Module | None, grid: bool) -> None:
        super().__init__()
        self.backbone, self.head, self.grid = backbone, head, grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone.feature_map(x) if self.grid else self.backbone(x)
        return features if self.head is None else torch.sigmoid(self.head(features))


def export_tagger_network(backbone: TrainableBackbone, head: nn.Module, grid: bool = False) -> bytes:
    """The ONNX bytes of backbone + tag head + sigmoid (what a tagger directory's ``model.onnx`` holds)."""
    return export_onnx(_Scored(backbone, head, grid), backbone.preprocessing.size)


def state_key(module: nn.Module) -> str:
    """A short hash of a module's weights (names and values)."""
    digest = hashlib.blake2b(digest_size=8)
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class ModuleEncoder(ImageEncoder):
    """A torch module over pixels, run as an ``ImageEncoder`` through ONNX Runtime: its (single) output is
    returned as ``pooled`` (whatever its shape), so ``vistext.features.encode_files`` can batch, parallelise
    and cache it. The name includes a hash of the weights: different weights never share a feature cache."""

    def __init__(self, module: nn.Module, name: str, preprocessing: Preprocessing, threads: int | None = None) -> None:
        self.name = f"{name.replace(':', '-').replace('/', '-')}-{state_key(module)}"
        self.preprocessing = preprocessing
        path = cache_dir("backbones") / f"{self.name}.onnx"
        if not path.is_file():
            export_onnx(module, preprocessing.size, path)
        self._session = open_session(path, threads=threads)
        self.dim = int(np.prod(self._session.get_outputs()[0].shape[1:]))

    def encode(self, batch: np.ndarray, grid: bool = False) -> ImageFeatures:
        output = self._session.run(None, {"pixels": np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return ImageFeatures(pooled=output)
