"""Image and text encoders, registered by name."""

from __future__ import annotations

from vistext.encoders.base import IMAGE_ENCODERS, ImageEncoder, ImageFeatures, Preprocessing

__all__ = ["IMAGE_ENCODERS", "ImageEncoder", "ImageFeatures", "Preprocessing", "create_image_encoder"]


def create_image_encoder(name: str = "efficientnet-lite0", **kwargs: object) -> ImageEncoder:
    """Build a registered image encoder by name (importing the built-in ones on first use)."""
    import vistext.encoders.efficientnet  # noqa: F401  (registers efficientnet-lite0)

    return IMAGE_ENCODERS.create(name, **kwargs)
