"""Encoders: the bundled image encoder on real photos (ONNX Runtime agrees with eager PyTorch, the uint8 graph
with the float one, the labels are readable names) and every registered text encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vistext.encoders import IMAGE_ENCODERS, ImageEncoder, create_image_encoder
from vistext.encoders.efficientnet import imagenet_labels
from vistext.encoders.text_encoders import TEXT_ENCODERS
from vistext.images import open_image
from vistext.text import Vocabulary, tokenize


@pytest.fixture(scope="module")
def onnx_encoder() -> ImageEncoder:
    return create_image_encoder("efficientnet-lite0")


@pytest.fixture(scope="module")
def pixels(flickr8k_images: list[Path]) -> np.ndarray:
    encoder = create_image_encoder("efficientnet-lite0")
    return np.stack([encoder.pixels(open_image(p)) for p in flickr8k_images[:6]])


def test_onnx_agrees_with_eager_pytorch_on_real_photos(onnx_encoder: ImageEncoder, pixels: np.ndarray) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two torch threads crawl on this kind of 2-core VM; the numbers do not change
    try:
        reference = create_image_encoder("efficientnet-lite0-torch")
        batch = onnx_encoder.preprocessing.normalise(pixels)
        expected = reference.encode(batch, grid=True)
    finally:
        torch.set_num_threads(threads)
    got = onnx_encoder.encode(batch, grid=True)
    assert got.pooled.shape == (6, 1280) and got.logits.shape == (6, 1000) and got.grid.shape == (6, 1280, 7, 7)
    np.testing.assert_allclose(got.pooled, expected.pooled, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got.logits, expected.logits, atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(got.grid, expected.grid, atol=1e-3, rtol=1e-4)
    assert (got.logits.argmax(1) == expected.logits.argmax(1)).all()


def test_uint8_graph_matches_the_float_graph(onnx_encoder: ImageEncoder, pixels: np.ndarray) -> None:
    assert pixels.dtype == np.uint8 and pixels.shape == (6, 224, 224, 3)
    from_floats = onnx_encoder.encode(onnx_encoder.preprocessing.normalise(pixels), grid=True)
    from_bytes = onnx_encoder.encode_pixels(pixels, grid=True)
    np.testing.assert_allclose(from_bytes.pooled, from_floats.pooled, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(from_bytes.logits, from_floats.logits, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(from_bytes.grid, from_floats.grid, atol=1e-4, rtol=1e-5)


def test_preprocess_is_pixels_then_normalise(onnx_encoder: ImageEncoder, flickr8k_images: list[Path]) -> None:
    image = open_image(flickr8k_images[0])
    pre = onnx_encoder.preprocessing
    floats = onnx_encoder.preprocess(image)
    assert floats.shape == (3, 224, 224) and floats.dtype == np.float32
    assert floats.min() >= -1.0 and floats.max() <= 1.0
    np.testing.assert_array_equal(floats, pre.normalise(onnx_encoder.pixels(image)[None])[0])


def test_labels_are_readable_names_and_encoders_are_registered() -> None:
    labels = imagenet_labels()
    assert len(labels) == 1000 and len(set(labels)) == 1000
    assert labels[281] == "tabby" and not any(label.startswith("n0") for label in labels)
    assert {"efficientnet-lite0", "efficientnet-lite0-torch"} <= set(IMAGE_ENCODERS.names())


# ---- text encoders (encoders/text_encoders.py) --------------------------------------------------------------
CAPTIONS = ["A dog runs on the grass .", "Two children play football", "a red car", "zzqx unknownword"]


def _tiny_vocab() -> Vocabulary:
    return Vocabulary.build(tokenize(t) for t in CAPTIONS[:3])


@pytest.mark.parametrize("name", TEXT_ENCODERS.names())
def test_every_text_encoder(name: str) -> None:
    kwargs: dict[str, object] = {"vocab": _tiny_vocab(), "hidden": 16} if name.startswith("glove-") else {}
    encoder = TEXT_ENCODERS.create(name, **kwargs)
    out = encoder(encoder.prepare(CAPTIONS))
    assert out.shape == (4, encoder.dim) and torch.isfinite(out).all()
    if name.startswith("glove-"):
        out.sum().backward()
        assert encoder.rnn.weight_ih_l0.grad is not None and encoder.embedding.weight.grad is not None
    elif name == "minilm-gpo":  # frozen MiniLM, trainable pooling: cached token states + gradients to the pool
        assert encoder.cacheable
        features = encoder.encode_frozen(CAPTIONS)
        assert features.shape == (4, encoder.max_tokens, 385)
        torch.testing.assert_close(encoder.pool(features), out, atol=1e-5, rtol=1e-4)
        out.sum().backward()
        assert encoder.position_logits.grad is not None
    else:
        assert encoder.cacheable and not out.requires_grad
