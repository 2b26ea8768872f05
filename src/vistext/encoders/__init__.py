"""Image and text encoders, registered by name; ``onnx`` exports graphs and opens ONNX Runtime sessions."""

from __future__ import annotations

from vistext.encoders.base import IMAGE_ENCODERS, ImageEncoder, ImageFeatures, Preprocessing
from vistext.errors import ModelError

__all__ = [
    "IMAGE_ENCODERS",
    "ImageEncoder",
    "ImageFeatures",
    "Preprocessing",
    "create_image_encoder",
    "image_feature_dim",
    "image_preprocessing",
]


def _register_builtins() -> None:
    import vistext.encoders.efficientnet  # noqa: F401  (registers efficientnet-lite0)


def create_image_encoder(name: str = "efficientnet-lite0", **kwargs: object) -> ImageEncoder:
    """Build a registered image encoder by name (importing the built-in ones on first use)."""
    _register_builtins()
    return IMAGE_ENCODERS.create(name, **kwargs)


def image_preprocessing(name: str) -> Preprocessing:
    """The preprocessing the registered image encoder ``name`` declares (its class's ``preprocessing``), read
    without building the encoder or opening its ONNX session."""
    _register_builtins()
    declared = getattr(IMAGE_ENCODERS.get(name), "preprocessing", None)
    if not isinstance(declared, Preprocessing):
        raise ModelError(f"image encoder {name!r} does not declare its preprocessing")
    return declared


def image_feature_dim(name: str) -> int:
    """The pooled feature size the registered image encoder ``name`` declares (its class's ``dim``), read without
    building it."""
    _register_builtins()
    declared = getattr(IMAGE_ENCODERS.get(name), "dim", None)
    if not isinstance(declared, int) or declared <= 0:
        raise ModelError(f"image encoder {name!r} does not declare its feature size")
    return declared
