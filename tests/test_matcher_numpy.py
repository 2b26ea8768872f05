"""The torch-free match classifier gives the PyTorch model's probabilities on real Flickr8k photos and tags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vistext.encoders import create_image_encoder
from vistext.errors import ModelError
from vistext.models.matcher import load_matcher
from vistext.models.matcher_numpy import load_numpy_matcher


def test_numpy_matcher_matches_pytorch(flickr8k_images: list[Path]) -> None:
    from PIL import Image

    encoder = create_image_encoder()
    pictures = [Image.open(path).convert("RGB") for path in flickr8k_images[:3]]
    pooled = encoder.encode(np.stack([encoder.preprocess(p) for p in pictures])).pooled
    tag_sets = [
        ["dog", "grass"],
        ["black dog", "spotted dog", "fighting"],
        ["man, bicycle"],
        ["xqzzyv"],  # a word GloVe does not know
        ["a", "girl", "in", "a", "pink", "dress", "climbs", "the", "stairs", "of", "a", "wooden", "house"],
        [],
    ]
    torch_matcher, numpy_matcher = load_matcher(), load_numpy_matcher()
    for features in pooled:
        expected = torch_matcher.score(features, tag_sets)
        got = numpy_matcher.score(features, tag_sets)
        assert got.shape == expected.shape == (len(tag_sets),)
        assert np.abs(got - expected).max() < 1e-5
    paired = numpy_matcher.score(pooled, tag_sets[:3])  # N images row by row with N tag sets
    assert np.abs(paired - torch_matcher.score(pooled, tag_sets[:3])).max() < 1e-5


def test_numpy_matcher_errors_like_the_pytorch_one(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a match model directory"):
        load_numpy_matcher(tmp_path)
