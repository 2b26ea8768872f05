"""Training views of an image: the original, flips, fixed crops and seeded random crops, by name.

One helper for every training path: joint training asks for fixed views (``orig,flip,crop-tl,crop-br,crop-c``),
the tagger's ``frozen-aug`` and ``finetune`` methods for the original plus random views
(``ImageViews.random(4, seed)``). A view set's ``name`` goes into feature cache keys, so it says exactly which
views these are.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from vistext.errors import UsageError

CROPS = {"tl": (0.0, 0.0), "tr": (1.0, 0.0), "bl": (0.0, 1.0), "br": (1.0, 1.0), "c": (0.5, 0.5)}
FIXED_VIEWS = ("orig", "flip", *(f"crop-{corner}" for corner in CROPS))
RANDOM_VIEW = "random"


class ImageViews:
    """``views(image) -> [view, ...]``, one per name in ``names``, in order:

    - ``orig``: the image itself; ``flip``: mirrored left-right;
    - ``crop-tl``/``-tr``/``-bl``/``-br``/``-c``: a ``fraction`` x ``fraction`` crop at that corner (or the
      centre), resized back to the image's size;
    - ``random``: a random resized crop (50-100% of the area, aspect 3:4 to 4:3), a horizontal flip half the
      time and mild brightness/contrast jitter. Its randomness is seeded from ``seed`` and the image's content,
      so a view set is reproducible and thread-safe; several ``random`` views draw from one generator in turn.
    """

    def __init__(self, names: Sequence[str], fraction: float = 0.85, seed: int = 0) -> None:
        names = list(names)
        if not names:
            raise UsageError("give at least one view")
        for view in names:
            if view not in FIXED_VIEWS and view != RANDOM_VIEW:
                raise UsageError(f"unknown training view {view!r}; known: orig, flip, crop-tl/tr/bl/br/c, random")
        self.views, self.fraction, self.seed = names, fraction, seed
        self.name = self._name()

    @classmethod
    def random(cls, n_views: int, seed: int = 0) -> ImageViews:
        """The original plus ``n_views - 1`` random views."""
        if n_views < 1:
            raise UsageError(f"n_views must be at least 1, got {n_views}")
        views = cls(["orig"] + [RANDOM_VIEW] * (n_views - 1), seed=seed)
        views.name = _augment_name(n_views, seed)  # one view too: "views:orig" would be another cache's name
        return views

    def _name(self) -> str:
        # the names feature caches already hold: fixed views as "views:...@fraction", the original plus random
        # views as "augment<n>-seed<seed>-v1"
        n_random = self.views.count(RANDOM_VIEW)
        if not n_random:
            return f"views:{','.join(self.views)}@{self.fraction}"
        if self.views == ["orig"] + [RANDOM_VIEW] * n_random:
            return _augment_name(len(self.views), self.seed)
        return f"views:{','.join(self.views)}@{self.fraction}-seed{self.seed}-v1"

    def __call__(self, image: Image.Image) -> list[Image.Image]:
        if RANDOM_VIEW not in self.views:
            return [self._fixed(image, view) for view in self.views]
        rng = self._generator(image)
        return [self._random(image, rng) if view == RANDOM_VIEW else self._fixed(image, view) for view in self.views]

    def _generator(self, image: Image.Image) -> np.random.Generator:
        thumb = np.asarray(image.resize((8, 8)), dtype=np.uint8).tobytes()
        return np.random.default_rng([self.seed, zlib.crc32(thumb)])

    def _fixed(self, image: Image.Image, view: str) -> Image.Image:
        if view == "orig":
            return image
        if view == "flip":
            return ImageOps.mirror(image)
        fx, fy = CROPS[view.removeprefix("crop-")]
        w, h = image.size
        cw, ch = round(w * self.fraction), round(h * self.fraction)
        x, y = round((w - cw) * fx), round((h - ch) * fy)
        return image.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR)

    @staticmethod
    def _random(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        width, height = image.size
        area = rng.uniform(0.5, 1.0) * width * height
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w = int(min(width, round(np.sqrt(area * ratio))))
        h = int(min(height, round(np.sqrt(area / ratio))))
        left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        view = image.crop((left, top, left + w, top + h))
        if rng.random() < 0.5:
            view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        view = ImageEnhance.Brightness(view).enhance(rng.uniform(0.8, 1.2))
        return ImageEnhance.Contrast(view).enhance(rng.uniform(0.8, 1.2))


def _augment_name(n_views: int, seed: int) -> str:
    return f"augment{n_views}-seed{seed}-v1"
