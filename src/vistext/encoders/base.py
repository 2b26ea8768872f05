"""The image encoder interface: preprocessing travels with the encoder that needs it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from vistext.registry import Registry


@dataclass(frozen=True)
class Preprocessing:
    """How an encoder wants its pixels: RGB, squashed to ``size`` x ``size``, then ``(x/255 - mean)/std``."""

    size: int = 224
    mean: float = 0.5
    std: float = 0.5

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def __call__(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> float32 CHW array ready for the encoder."""
        return self.normalise(self.pixels(image)[None])[0]

    def pixels(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> uint8 HWC array at the encoder's size (a quarter of the float array's bytes)."""
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.BILINEAR, reducing_gap=3.0)
        return np.asarray(image, dtype=np.uint8)

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NHWC batch -> float32 NCHW ``(x/255 - mean)/std``."""
        batch = np.asarray(pixels, dtype=np.float32)
        batch = (batch * (1.0 / 255.0) - self.mean) * (1.0 / self.std)
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


@dataclass
class ImageFeatures:
    """What an image encoder returns for a batch of N images."""

    pooled: np.ndarray  # (N, dim) float32: global-average-pooled features
    logits: np.ndarray | None = None  # (N, n_classes) float32: classifier logits, if the encoder has labels
    grid: np.ndarray | None = None  # (N, dim, h, w) float32: the last feature map, when asked for


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits along the last axis (numerically stable)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class ImageEncoder(ABC):
    """A pretrained image backbone. ``encode`` takes a batch made by ``preprocess``."""

    name: str
    dim: int
    preprocessing: Preprocessing
    labels: list[str] | None = None
    # how many batches ``encode_pixels`` may run at once from different threads (a bulk pass's encode streams)
    encode_streams: int = 1

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.preprocessing(image)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """One image as uint8 HWC pixels for ``encode_pixels`` (what the decode threads produce)."""
        return self.preprocessing.pixels(image)

    @abstractmethod
    def encode(self, batch: np.ndarray, grid: bool = False) -> ImageFeatures:
        """(N, 3, H, W) float32 -> features; ``grid=True`` also returns the last feature map."""

    def encode_pixels(self, batch: np.ndarray, grid: bool = False) -> ImageFeatures:
        """(N, H, W, 3) uint8 -> features: ``encode`` of the normalised batch, unless an encoder does better."""
        return self.encode(self.preprocessing.normalise(batch), grid=grid)


IMAGE_ENCODERS: Registry[ImageEncoder] = Registry("image encoder")
