"""What joint training learns from: cached image features (several views per training image) and frozen text
features of every caption, for one split of a caption dataset.

Image features come from the bundled encoder through ``features.encode_files`` (its cache makes a second run
start in seconds); frozen text features are cached here under ``$VISTEXT_HOME/text-features``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from vistext.errors import UsageError
from vistext.models.joint import JointModel
from vistext.paths import atomic_path, cache_dir

# ---- views -------------------------------------------------------------------------------------------------


class TrainingViews:
    """Image -> views (``orig``, ``flip``, ``crop-tl``/``-tr``/``-bl``/``-br``/``-c``: 85% crops resized back)."""

    CROPS = {"tl": (0.0, 0.0), "tr": (1.0, 0.0), "bl": (0.0, 1.0), "br": (1.0, 1.0), "c": (0.5, 0.5)}

    def __init__(self, names: list[str], fraction: float = 0.85) -> None:
        for view in names:
            if view not in ("orig", "flip") and view.removeprefix("crop-") not in self.CROPS:
                raise UsageError(f"unknown training view {view!r}; known: orig, flip, crop-tl/tr/bl/br/c")
        self.views, self.fraction = names, fraction
        self.name = f"views:{','.join(names)}@{fraction}"

    def _one(self, image: Image.Image, view: str) -> Image.Image:
        if view == "orig":
            return image
        if view == "flip":
            return ImageOps.mirror(image)
        fx, fy = self.CROPS[view.removeprefix("crop-")]
        w, h = image.size
        cw, ch = round(w * self.fraction), round(h * self.fraction)
        x, y = round((w - cw) * fx), round((h - ch) * fy)
        return image.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR)

    def __call__(self, image: Image.Image) -> list[Image.Image]:
        return [self._one(image, v) for v in self.views]


# ---- data ---------------------------------------------------------------------------------------------------


@dataclass
class SplitData:
    images: list[Path]
    pooled: torch.Tensor  # (N, V, D) float32
    grid: torch.Tensor | None  # (N, V, D, h, w) float16
    texts: list[str]
    owner: np.ndarray  # caption -> image row
    text_features: torch.Tensor | None = None  # (n_captions, d_text) when the text encoder is frozen


def split_data(dataset: Any, split: str, limit: int | None, views: TrainingViews | None, grid: bool,
                progress: bool) -> SplitData:  # fmt: skip
    from vistext.encoders import create_image_encoder
    from vistext.features import encode_files

    by_image = dataset.captions_by_image(split)
    images = sorted(by_image)[:limit] if limit else sorted(by_image)
    if not images:
        raise UsageError(f"{dataset.name}: split {split!r} has no captioned images")
    arrays = encode_files(images, create_image_encoder(), grid=grid, views=views, progress=progress)
    pooled = torch.from_numpy(np.asarray(arrays.pooled, dtype=np.float32))
    fmap = torch.from_numpy(arrays.grid) if grid and arrays.grid is not None else None
    if pooled.ndim == 2:  # one view (plain, or a single training view): add the views axis
        pooled = pooled[:, None]
    if fmap is not None and fmap.ndim == 4:
        fmap = fmap[:, None]
    texts = [t for image in images for t in by_image[image]]
    owner = np.array([i for i, image in enumerate(images) for _ in by_image[image]], dtype=np.int64)
    return SplitData(images, pooled, fmap, texts, owner)


def cached_text_features(model: JointModel, texts: list[str], progress: bool) -> torch.Tensor:
    """Frozen text encoder outputs for ``texts``, cached under VISTEXT_HOME by encoder and content."""
    key = hashlib.blake2b(("\n".join(texts) + json.dumps(model.text_encoder.config())).encode(), digest_size=12)
    file = cache_dir("text-features", model.text_encoder.name) / f"{key.hexdigest()}.npy"
    if file.is_file():
        return torch.from_numpy(np.load(file))
    chunks = []
    for s in tqdm(range(0, len(texts), 256), desc="text features", disable=not progress):
        chunks.append(model.text_encoder.encode_frozen(texts[s : s + 256]))
    features = torch.cat(chunks).float()
    if features.ndim > 2:  # token states: float16 halves a cache that would otherwise be ~1.5 GB for Flickr8k
        features = features.half()
    with atomic_path(file, fsync=False) as tmp:
        np.save(tmp, features.numpy())
    return features
