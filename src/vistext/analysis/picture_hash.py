"""Perceptual hashes: 64 bits that stay (nearly) the same when a photo is re-encoded, resized, cropped a little,
rotated by EXIF or has its metadata changed, and differ between two shots of the same scene.

Two classic hashes, both on the EXIF-transposed photo in grayscale (imagehash's definitions; numpy and Pillow
only): the DCT hash (pHash: the signs of the 8x8 lowest frequencies of a 32x32 picture against their median) and
the difference hash (dHash: whether each pixel of a 9x8 picture is brighter than its right neighbour). Copies are
told apart by the Hamming distance between hashes, confirmed by the image features where a crop makes the hashes
drift (the constants below, measured by bench/duplicates.py; the rule is ``analysis.duplicates.copy_links``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vistext.images import open_image

# Two photos are copies when their hashes (128 bits, both kinds together) differ in at most SURE_DISTANCE bits, or
# in at most COPY_DISTANCE bits (a 5 % crop needs up to ~28) and their image features agree (cosine at least
# COPY_MIN_COSINE: distinct product shots on white and near-identical scenes come that close in hash, rarely in
# features). Chosen on the dev half of bench/duplicates.py.
SURE_DISTANCE = 16
COPY_DISTANCE = 28
COPY_MIN_COSINE = 0.85
_SIDE = 32  # the DCT hash's picture
_LOW = 8  # the frequencies it keeps per axis
_DECODE_SIDE = 64  # a JPEG is decoded at a DCT scale whose shorter side is still at least this
_BITS = np.arange(63, -1, -1, dtype=np.uint64)


def _dct_matrix(size: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``D @ x`` is the DCT of ``x``."""
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    matrix = np.cos(np.pi * (2 * n + 1) * k / (2 * size)) * np.sqrt(2.0 / size)
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT = _dct_matrix(_SIDE)


@dataclass(frozen=True)
class PictureHash:
    """The DCT hash and the difference hash of one picture, as signed 64-bit integers (storable as BIGINT)."""

    dct: int
    diff: int


def _pack(bits: np.ndarray) -> int:
    """64 booleans -> one signed 64-bit integer (first bit most significant)."""
    value = int(np.bitwise_or.reduce(bits.astype(np.uint64).ravel() << _BITS))
    return value - (1 << 64) if value >= 1 << 63 else value


def hash_picture(picture: Image.Image) -> PictureHash:
    """The hashes of an already decoded and oriented picture."""
    gray = picture.convert("L")
    small = np.asarray(gray.resize((_SIDE, _SIDE), Image.Resampling.LANCZOS), dtype=np.float64)
    low = (_DCT @ small @ _DCT.T)[:_LOW, :_LOW]
    dct_bits = low > np.median(low.ravel()[1:])  # the DC term (overall brightness) would skew the median
    tiny = np.asarray(gray.resize((_LOW + 1, _LOW), Image.Resampling.LANCZOS), dtype=np.int16)
    diff_bits = tiny[:, 1:] > tiny[:, :-1]
    return PictureHash(_pack(dct_bits), _pack(diff_bits))


def hash_photo(path: str | Path) -> PictureHash:
    """The hashes of the photo at ``path``, decoded through the safe door (``open_image``: a FIFO, a bomb or a
    broken file raises ``ImageDecodeError`` naming it) at a reduced scale, with its EXIF orientation applied."""
    return hash_picture(open_image(path, min_side=_DECODE_SIDE))


def hamming_block(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bits differing between each row of ``rows`` (b x k int64 hashes) and each row of ``cols`` (m x k), summed
    over the k hash kinds: a b x m int16 matrix."""
    distance = np.zeros((len(rows), len(cols)), dtype=np.int16)
    for kind in range(rows.shape[1]):
        xor = np.bitwise_xor(rows[:, kind, None], cols[None, :, kind]).view(np.uint64)
        distance += _popcount(xor)
    return distance


def pair_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits differing between row k of ``a`` and row k of ``b`` (n x k int64 hashes each), summed over kinds."""
    return _popcount(np.bitwise_xor(a, b).view(np.uint64)).sum(axis=1)


def _popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy 2's bitwise_count, else the SWAR count)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values).astype(np.int16)
    v = values - ((values >> np.uint64(1)) & np.uint64(0x5555555555555555))
    v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return ((v * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.int16)
