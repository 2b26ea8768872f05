"""Any torch module over pixels as an ``ImageEncoder``: exported to ONNX once, run through ONNX Runtime."""

from __future__ import annotations

import hashlib

import numpy as np
from torch import nn

from vistext.encoders.base import ImageEncoder, ImageFeatures, Preprocessing
from vistext.encoders.onnx import export_onnx, open_session
from vistext.paths import cache_dir


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
