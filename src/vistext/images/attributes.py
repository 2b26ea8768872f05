"""What a photo's pixels say that words name: its basic colours, how light it is, and whether it is black and white.

``pixel_measures`` turns the uint8 pixels the indexer already decoded for the encoder into a small vector of
measures, stored per photo as the embedding space ``ATTRIBUTE_SPACE`` (a search reads them; it never searches the
space by cosine). The measures are plain fractions and means, so what a query makes of them (how much red makes
"a red bus") is decided at query time (``service.query_syntax``) and can be refitted without re-indexing.

Pixels are sampled on a coarse grid (every ``STRIDE``-th pixel each way: 56 x 56 of a 224-px image), and colour
fractions are weighted towards the centre, where the subject of a photo usually is. Each sampled pixel gets one of
the eleven basic colour terms (Berlin and Kay) from its hue, saturation and value.
"""

from __future__ import annotations

import numpy as np

COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
# the measures after the colour fractions, in this order
LIGHT = ("luma", "chroma", "dark", "warm_sky", "sky_luma")
MEASURES = COLOURS + LIGHT
ATTRIBUTE_SPACE = "attributes:pixels-v1"  # a new version of the measures is a new space: old ones are refilled
STRIDE = 4
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
    """Each pixel's colour term, as an index into ``COLOURS``."""
    terms = np.full(hue.shape, COLOURS.index("grey"), dtype=np.int64)
    bounds = np.array([bound for bound, _ in _HUES], dtype=np.float32)
    names = np.array([COLOURS.index(name) for _, name in _HUES])
    chromatic = names[np.minimum(np.searchsorted(bounds, hue, side="right"), len(names) - 1)]
    vivid = sat >= 0.22
    terms = np.where(vivid, chromatic, terms)
    # orange and red-orange dark or dull are brown; light, soft reds are pink
    warm = (hue < 45.0) | (hue >= 345.0)
    brown = vivid & warm & ((val < 0.55) | ((sat < 0.45) & (val < 0.75)))
    terms = np.where(brown, COLOURS.index("brown"), terms)
    pink = vivid & ((hue < 15.0) | (hue >= 335.0)) & (sat < 0.5) & (val > 0.7)
    terms = np.where(pink, COLOURS.index("pink"), terms)
    terms = np.where(~vivid & (val > 0.78), COLOURS.index("white"), terms)
    return np.where(val < 0.18, COLOURS.index("black"), terms)


def pixel_measures(pixels: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) or (H, W, 3) uint8 RGB -> (N, len(MEASURES)) or (len(MEASURES),) float32 measures."""
    batch = np.asarray(pixels)
    single = batch.ndim == 3
    batch = batch[None] if single else batch
    rgb = batch[:, ::STRIDE, ::STRIDE, :].astype(np.float32) * (1.0 / 255.0)
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    spread = high - low
    sat = np.where(high > 0, spread / np.maximum(high, 1e-6), 0.0)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.maximum(spread, 1e-6)
    hue_green_blue = np.where(high == green, (blue - red) / safe + 2.0, (red - green) / safe + 4.0)
    hue = np.where(high == red, ((green - blue) / safe) % 6.0, hue_green_blue) * 60.0
    terms = _colour_terms(hue, sat, high)
    n, height, width = terms.shape
    weights = _centre_weights(height, width)
    fractions = np.stack([(weights * (terms == c)).sum(axis=(1, 2)) for c in range(len(COLOURS))], axis=1)
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    top = slice(0, max(1, height // 3))
    warm_hue = ((hue < 45.0) | (hue >= 290.0)) & (sat > 0.3)
    light = np.stack(
        [
            luma.mean(axis=(1, 2)),
            spread.mean(axis=(1, 2)),
            (luma < 0.12).mean(axis=(1, 2)),
            warm_hue[:, top].mean(axis=(1, 2)),
            luma[:, top].mean(axis=(1, 2)),
        ],
        axis=1,
    )
    measures = np.concatenate([fractions, light], axis=1).astype(np.float32)
    return measures[0] if single else measures
