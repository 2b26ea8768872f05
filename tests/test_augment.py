"""Training views (vistext.augment): fixed views by name, seeded random views reproducible, and the view-set
names the feature caches are keyed by kept as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from vistext.augment import ImageViews
from vistext.errors import UsageError


@pytest.fixture()
def photo(flickr8k_images: list[Path]) -> Image.Image:
    return Image.open(flickr8k_images[0]).convert("RGB").resize((300, 200))


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


def test_fixed_views(photo: Image.Image) -> None:
    views = ImageViews(["orig", "flip", "crop-tl", "crop-br", "crop-c"])
    orig, flip, top_left, bottom_right, centre = views(photo)
    assert orig is photo and _same(flip, ImageOps.mirror(photo))
    assert all(view.size == photo.size for view in (top_left, bottom_right, centre))
    expected = photo.crop((0, 0, 255, 170)).resize(photo.size, Image.Resampling.BILINEAR)  # 85% of each side
    assert _same(top_left, expected)
    assert not _same(top_left, bottom_right) and not _same(top_left, centre)


def test_random_views_reproducible_and_seeded(photo: Image.Image) -> None:
    views = ImageViews.random(4, seed=1)
    first, second = views(photo), views(photo)
    assert len(first) == 4 and first[0] is photo
    assert all(_same(a, b) for a, b in zip(first, second, strict=True))
    other = ImageViews.random(4, seed=2)(photo)
    assert not all(_same(a, b) for a, b in zip(first[1:], other[1:], strict=True))
    # the random views draw from one generator in turn: a shorter set is a prefix of a longer one
    assert all(_same(a, b) for a, b in zip(ImageViews.random(2, seed=1)(photo), first, strict=False))
    mixed = ImageViews(["flip", "random"], seed=1)(photo)
    assert _same(mixed[1], first[1]) and _same(mixed[0], ImageOps.mirror(photo))


def test_names_key_the_feature_caches() -> None:
    assert ImageViews.random(4, seed=1).name == "augment4-seed1-v1"
    assert ImageViews.random(1, seed=0).name == "augment1-seed0-v1"
    assert ImageViews(["orig", "flip", "crop-tl", "crop-br", "crop-c"]).name == (
        "views:orig,flip,crop-tl,crop-br,crop-c@0.85"
    )
    assert ImageViews(["orig", "random", "random"], seed=3).name == "augment3-seed3-v1"
    assert ImageViews(["flip", "random"], seed=3).name == "views:flip,random@0.85-seed3-v1"


def test_bad_view_names() -> None:
    with pytest.raises(UsageError, match="unknown training view 'crop-x'"):
        ImageViews(["orig", "crop-x"])
    with pytest.raises(UsageError, match="n_views must be at least 1"):
        ImageViews.random(0)
    with pytest.raises(UsageError, match="at least one view"):
        ImageViews([])
