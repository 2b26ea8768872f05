"""What a photo's pixels say that words name: its basic colours, how light it is, and whether it is black and white.

``pixel_measures`` turns the uint8 pixels the indexer already decoded for the encoder into a small vector of
measures, stored per photo as the embedding space ``ATTRIBUTE_SPACE`` (a search reads them; it never searches the
space by cosine). The measures are plain fractions and means, so what a query makes of them (how much red makes
"a red bus") is decided at query time (``service.query_syntax``) and can be refitted without re-indexing.

Pixels are sampled on a coarse grid (every ``STRIDE``-th pixel each way: 56 x 56 of a 224-px image), and colour
fractions are weighted towards the centre, where the subject of a photo usually is. Each sampled pixel gets one of
the eleven basic colour terms (Berlin and Kay) from its hue, saturation and value, read from a table of the
colours quantised to 32 levels a channel.
"""

from __future__ import annotations

import functools

import numpy as np

COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
# the measures after the colour fractions, in this order
LIGHT = ("luma", "chroma", "dark", "warm_sky", "sky_luma")
MEASURES = COLOURS + LIGHT
ATTRIBUTE_SPACE = "attributes:pixels-v1"  # a new version of the measures is a new space: old ones are refilled
STRIDE = 4
LEVELS = 32  # per channel, for the colour tables (a power of two)
CENTRE_SIGMA = 0.12  # of the image side: chosen on Flickr8k dev (0.06-0.35 tried; the subject is central)

_HUES = (
    (15.0, "red"),
    (40.0, "orange"),
    (68.0, "yellow"),
    (160.0, "green"),
    (255.0, "blue"),
    (290.0, "purple"),
    (335.0, "pink"),
    (360.0, "red"),
)  # fmt: skip  (upper hue bound in degrees -> colour)


def measure_index(name: str) -> int:
    """The position of measure ``name`` (a colour term or one of ``LIGHT``) in a stored vector."""
    return MEASURES.index(name)


def _centre_weights(height: int, width: int) -> np.ndarray:
    y = (np.arange(height) + 0.5) / height - 0.5
    x = (np.arange(width) + 0.5) / width - 0.5
    weights = np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * CENTRE_SIGMA**2))
    return (weights / weights.sum()).astype(np.float32)


def _colour_terms(hue: np.ndarray, sat: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Each colour's term, as an index into ``COLOURS``, from its hue (degrees), saturation and value (0-1)."""
    bounds = np.array([bound for bound, _ in _HUES], dtype=np.float32)
    names = np.array([COLOURS.index(name) for _, name in _HUES])
    chromatic = names[np.minimum(np.searchsorted(bounds, hue, side="right"), len(names) - 1)]
    vivid = sat >= 0.22
    terms = np.where(vivid, chromatic, COLOURS.index("grey"))
    # orange and red-orange dark or dull are brown; light, soft reds are pink
    warm = (hue < 45.0) | (hue >= 345.0)
    brown = vivid & warm & ((val < 0.55) | ((sat < 0.45) & (val < 0.75)))
    terms = np.where(brown, COLOURS.index("brown"), terms)
    pink = vivid & ((hue < 15.0) | (hue >= 335.0)) & (sat < 0.5) & (val > 0.7)
    terms = np.where(pink, COLOURS.index("pink"), terms)
    terms = np.where(~vivid & (val > 0.78), COLOURS.index("white"), terms)
    return np.where(val < 0.18, COLOURS.index("black"), terms)


@functools.cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """(colour term, warm hue) of every colour quantised to ``LEVELS`` per channel, indexed by ``_quantised``: a
    table look-up per pixel instead of a colour conversion (measured: ~0.1 ms a photo instead of ~1-3 ms)."""
    levels = (np.arange(LEVELS, dtype=np.float32) + 0.5) / LEVELS
    red, green, blue = (axis.ravel() for axis in np.meshgrid(levels, levels, levels, indexing="ij"))
    high = np.maximum(np.maximum(red, green), blue)
    spread = high - np.minimum(np.minimum(red, green), blue)
    safe = np.maximum(spread, 1e-6)
    hue_green_blue = np.where(high == green, (blue - red) / safe + 2.0, (red - green) / safe + 4.0)
    hue = np.where(high == red, ((green - blue) / safe) % 6.0, hue_green_blue) * 60.0
    sat = spread / np.maximum(high, 1e-6)
    warm = ((hue < 45.0) | (hue >= 290.0)) & (sat > 0.3)
    return _colour_terms(hue, sat, high).astype(np.intp), warm.astype(np.float32)


def _quantised(rgb: np.ndarray) -> np.ndarray:
    shift = 8 - (LEVELS - 1).bit_length()  # 32 levels: the top 5 bits
    q = (rgb >> shift).astype(np.intp)
    return (q[..., 0] * LEVELS + q[..., 1]) * LEVELS + q[..., 2]


def pixel_measures(pixels: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) or (H, W, 3) uint8 RGB -> (N, len(MEASURES)) or (len(MEASURES),) float32 measures."""
    batch = np.asarray(pixels, dtype=np.uint8)
    single = batch.ndim == 3
    batch = batch[None] if single else batch
    small = batch[:, ::STRIDE, ::STRIDE, :]
    n, height, width = small.shape[:3]
    terms_of, warm_of = _tables()
    cells = _quantised(small)
    terms = terms_of[cells]
    weights = np.broadcast_to(_centre_weights(height, width), (n, height, width))
    image = np.arange(n)[:, None, None] * len(COLOURS)
    fractions = np.bincount((terms + image).ravel(), weights=weights.ravel(), minlength=n * len(COLOURS))
    luma = small.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) * (1.0 / 255.0)
    spread = (small.max(axis=-1) - small.min(axis=-1)).astype(np.float32) * (1.0 / 255.0)
    top = slice(0, max(1, height // 3))
    light = np.stack(
        [
            luma.mean(axis=(1, 2)),
            spread.mean(axis=(1, 2)),
            (luma < 0.12).mean(axis=(1, 2)),
            warm_of[cells[:, top]].mean(axis=(1, 2)),
            luma[:, top].mean(axis=(1, 2)),
        ],
        axis=1,
    )
    measures = np.concatenate([fractions.reshape(n, len(COLOURS)), light], axis=1).astype(np.float32)
    return measures[0] if single else measures
