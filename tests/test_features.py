"""Streaming extraction on real photos: finite features, bad files reported not fatal, a disk cache that hits."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from vistext import features
from vistext.encoders import ImageEncoder, ImageFeatures, create_image_encoder
from vistext.errors import ImageDecodeError
from vistext.features import embed_files, encode_files, extract


@pytest.fixture(scope="module")
def encoder() -> ImageEncoder:
    return create_image_encoder()


@pytest.fixture()
def photos(flickr8k_images: list[Path]) -> list[Path]:
    return flickr8k_images[:20]


def test_extract_real_photos(photos: list[Path], encoder: ImageEncoder) -> None:
    batches = list(extract(photos, encoder, batch_size=8, workers=2, progress=False))
    assert [len(b) for b in batches] == [8, 8, 4]
    items = [item for batch in batches for item in batch]
    assert sorted(item.path for item in items) == sorted(str(p) for p in photos)
    for item in items:
        assert item.error is None and item.grid is None
        assert item.pooled is not None and item.pooled.shape == (1280,) and np.isfinite(item.pooled).all()
        assert item.logits is not None and item.logits.shape == (1000,)
    # the same image through the runner and through a direct encode gives the same features
    direct = encoder.encode(encoder.preprocess(Image.open(photos[0]).convert("RGB"))[None]).pooled[0]
    first = next(item for item in items if item.path == str(photos[0]))
    np.testing.assert_allclose(first.pooled, direct, rtol=1e-4, atol=1e-4)


def test_bad_file_is_reported_and_run_continues(tmp_path: Path, photos: list[Path], encoder: ImageEncoder) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(photos[0].read_bytes()[:1500])
    stream = [*photos[:5], bad, *photos[5:10]]
    items = [item for batch in extract(stream, encoder, batch_size=4, progress=False) for item in batch]
    assert len(items) == 11
    failed = [item for item in items if item.error is not None]
    assert len(failed) == 1 and failed[0].path == str(bad)
    assert str(bad) in failed[0].error and "truncated" in failed[0].error  # type: ignore[operator]
    assert failed[0].pooled is None and failed[0].logits is None
    assert all(np.isfinite(item.pooled).all() for item in items if item.error is None)  # type: ignore[arg-type]


def test_extract_grid_and_lazy_paths(photos: list[Path], encoder: ImageEncoder) -> None:
    lazy = (p for p in photos[:3])
    items = [item for batch in extract(lazy, encoder, grid=True, progress=False) for item in batch]
    assert len(items) == 3 and all(item.grid is not None and item.grid.shape == (1280, 7, 7) for item in items)


def test_encode_files_aligned_and_cached(
    photos: list[Path], encoder: ImageEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = encode_files(photos, encoder, progress=False, batch_size=8)
    assert first.pooled.shape == (20, 1280) and first.pooled.dtype == np.float32
    assert first.logits is not None and first.logits.shape == (20, 1000)
    alone = encode_files([photos[7]], encoder, progress=False, cache=False)
    np.testing.assert_allclose(first.pooled[7], alone.pooled[0], rtol=1e-4, atol=1e-4)  # rows follow input order

    # the second call reads the cache: no photo is decoded or encoded again (checked, not timed)
    monkeypatch.setattr(features, "_stream", lambda *args, **kwargs: pytest.fail("encoded again, not from the cache"))
    second = encode_files(photos, encoder, progress=False, batch_size=8)
    np.testing.assert_array_equal(first.pooled, second.pooled)
    np.testing.assert_array_equal(first.logits, second.logits)
    assert second.paths == [str(p) for p in photos]


def test_encode_files_views_and_grid(photos: list[Path], encoder: ImageEncoder) -> None:
    def flips(img: Image.Image) -> list[Image.Image]:
        return [img, ImageOps.mirror(img)]

    flips.name = "flip2"  # type: ignore[attr-defined]
    arrays = encode_files(photos[:4], encoder, views=flips, grid=True, progress=False)
    assert arrays.pooled.shape == (4, 2, 1280)
    assert arrays.grid is not None and arrays.grid.shape == (4, 2, 1280, 7, 7) and arrays.grid.dtype == np.float16
    assert not np.allclose(arrays.pooled[:, 0], arrays.pooled[:, 1])  # the views differ


def test_encode_files_refuses_bad_file(tmp_path: Path, photos: list[Path], encoder: ImageEncoder) -> None:
    bad = tmp_path / "fake.jpg"
    bad.write_text("not an image")
    with pytest.raises(ImageDecodeError, match="not an image file") as caught:
        encode_files([photos[0], bad], encoder, progress=False)
    assert caught.value.path == str(bad)


def test_embed_files_aligns_rows_and_streams(tmp_path: Path, photos: list[Path], encoder: ImageEncoder) -> None:
    paths = [*photos[:6], photos[2]]  # a repeated path fills both rows
    seen: list[int] = []

    def embed(features: ImageFeatures) -> np.ndarray:
        seen.append(len(features.pooled))
        assert features.grid is not None and features.grid.shape[1:] == (1280, 7, 7)
        return features.pooled[:, :3] * 2

    vectors = embed_files(paths, encoder, embed, grid=True, batch_size=4, progress=False)
    assert vectors.shape == (7, 3) and max(seen) <= 4 and sum(seen) == 6
    expected = encode_files(paths, encoder, cache=False, progress=False).pooled[:, :3] * 2
    np.testing.assert_allclose(vectors, expected, rtol=1e-6, atol=1e-6)
    assert embed_files([], encoder, lambda f: f.pooled, progress=False).shape == (0, 1280)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(ImageDecodeError, match="notes.jpg"):
        embed_files([photos[0], bad], encoder, lambda f: f.pooled, progress=False)


def test_two_encode_streams_give_the_same_batches_in_order(photos: list[Path], encoder: ImageEncoder) -> None:
    """Indexing's encoder runs two batches at once (each on its share of the cores): the batches come back in
    input order with the features one stream gives."""
    streamed = create_image_encoder("efficientnet-lite0", streams=2)
    assert streamed.encode_streams == 2 and encoder.encode_streams == 1
    one = [b for b in extract(photos, encoder, batch_size=4, workers=2, progress=False)]
    two = [b for b in extract(photos, streamed, batch_size=4, workers=2, progress=False)]
    assert [[i.path for i in b] for b in two] == [[i.path for i in b] for b in one]
    for mine, theirs in zip((i for b in two for i in b), (i for b in one for i in b), strict=True):
        np.testing.assert_allclose(mine.pooled, theirs.pooled, rtol=1e-4, atol=1e-4)  # type: ignore[arg-type]
        np.testing.assert_allclose(mine.logits, theirs.logits, rtol=1e-4, atol=1e-4)  # type: ignore[arg-type]


def test_a_stream_closed_early_stops_its_threads(photos: list[Path]) -> None:
    streamed = create_image_encoder("efficientnet-lite0", streams=2)
    batches = extract(photos, streamed, batch_size=2, workers=2, progress=False)
    assert len(next(batches)) == 2
    batches.close()  # photos not yet decoded are dropped; the batches in flight finish, then the threads end
    assert not any(t.name.startswith(("vistext-decode", "vistext-encode")) for t in threading.enumerate())
