"""What training learns from. Joint training: cached image features (several views per training image) and
frozen text features of every caption, for one split of a caption dataset. Taggers and matchers: the train and
validation images of a tagged dataset (``split_items``).

Image features come from the bundled encoder through ``features.encode_files`` (its cache makes a second run
start in seconds); frozen text features are cached here under ``$VISTEXT_HOME/text-features``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from vistext.augment import ImageViews
from vistext.errors import UsageError
from vistext.models.joint import JointModel
from vistext.paths import atomic_path, cache_dir

if TYPE_CHECKING:
    from vistext.datasets import TaggedDataset, TaggedImage

# ---- data ---------------------------------------------------------------------------------------------------


@dataclass
class SplitData:
    images: list[Path]
    pooled: torch.Tensor  # (N, V, D) float32
    grid: torch.Tensor | None  # (N, V, D, h, w) float16
    texts: list[str]
    owner: np.ndarray  # caption -> image row
    text_features: torch.Tensor | None = None  # (n_captions, d_text) when the text encoder is frozen


def split_data(dataset: Any, split: str, limit: int | None, views: ImageViews | None, grid: bool,
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


# ---- tagged datasets: train and validation images --------------------------------------------------------


def split_items(
    dataset: TaggedDataset, val_fraction: float, seed: int, max_images: int | None = None
) -> tuple[list[TaggedImage], list[TaggedImage]]:
    """(train, validation) items of a tagged dataset, for the tagger and the matcher: the train and dev/val
    splits when present; otherwise ``val_fraction`` of the training images is held out (seeded). A test split
    is never used for training."""
    splits = dataset.splits()
    train_name = dataset.train_split()
    val_name = next((s for s in ("dev", "val", "valid", "validation") if s in splits), None)
    if train_name is not None:
        train = dataset.items(train_name)
    else:
        held = {item.image for s in splits if s.startswith("test") for item in dataset.items(s)}
        train = [item for item in dataset.items() if item.image not in held]
    if max_images is not None:
        train = [train[i] for i in sorted(np.random.default_rng(seed).permutation(len(train))[:max_images])]
    if val_name is not None:
        val = dataset.items(val_name)
    else:
        order = np.random.default_rng(seed).permutation(len(train))
        n_val = max(1, round(val_fraction * len(train)))
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    if not train or not val:
        raise UsageError(f"{dataset.name}: too few images to train and validate a tagger ({len(train)} + {len(val)})")
    return train, val
