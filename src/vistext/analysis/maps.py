"""A 2-D map of a collection: t-SNE (or PCA) over the image embeddings, computed once and cached on disk.

The cache key is a fingerprint of the ids and vectors, so re-indexing that changes nothing reuses the layout and
any change to the collection computes a new one.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vistext.errors import StoreError, UsageError
from vistext.paths import atomic_path

log = logging.getLogger(__name__)

METHODS = ("tsne", "pca")
LAYOUT_VERSION = 1  # bump when the algorithm or its settings change, so old caches are not reused
TSNE_MIN_POINTS = 20  # below this t-SNE has no neighbourhoods worth keeping: PCA is as good and instant


@dataclass
class MapLayout:
    """Image ids and their 2-D positions, scaled into [0, 1] on both axes."""

    ids: np.ndarray  # (N,) int64
    xy: np.ndarray  # (N, 2) float32
    method: str
    key: str


def fingerprint(ids: np.ndarray, matrix: np.ndarray, method: str, seed: int) -> str:
    """A short hash of everything the layout depends on."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"v{LAYOUT_VERSION}:{method}:{seed}:{matrix.shape}".encode())
    digest.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(matrix, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _unit_square(xy: np.ndarray) -> np.ndarray:
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = np.maximum(high - low, 1e-9)
    # a small margin so points on the edge are not cut by the canvas border
    return (0.02 + 0.96 * (xy - low) / span).astype(np.float32)


def _reduce(matrix: np.ndarray, dims: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    dims = min(dims, matrix.shape[0], matrix.shape[1])
    return PCA(n_components=dims, random_state=seed, svd_solver="randomized" if dims < 100 else "auto").fit_transform(
        matrix
    )


def compute_layout(matrix: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """2-D coordinates in [0, 1] for the rows of ``matrix`` (``tsne`` keeps neighbourhoods; ``pca`` is instant)."""
    if method not in METHODS:
        raise UsageError(f"unknown map method {method!r}; choose one of {', '.join(METHODS)}")
    matrix = np.asarray(matrix, dtype=np.float32)
    n = matrix.shape[0]
    if n == 0:
        raise UsageError("the collection is empty: nothing to map")
    if n < 3:
        # too few points for PCA/t-SNE to mean anything; put them on a line
        return _unit_square(np.column_stack([np.arange(n), np.zeros(n)]).astype(np.float32))
    matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    if method == "pca" or n < TSNE_MIN_POINTS:
        return _unit_square(_reduce(matrix, 2, seed))
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    tsne = TSNE(
        n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed, metric="cosine"
    )
    # one OpenMP thread: on a shared, busy machine sklearn's threaded t-SNE spends 10-100x longer spin-waiting
    with threadpool_limits(1):
        # PCA to 50 dims first: the usual t-SNE recipe, and ~25x less work for the neighbour search
        return _unit_square(tsne.fit_transform(_reduce(matrix, 50, seed)))


def cached_layout(
    ids: np.ndarray, matrix: np.ndarray, cache_folder: str | Path, method: str = "tsne", seed: int = 0
) -> MapLayout:
    """The layout of ``(ids, matrix)``: read from ``cache_folder`` when this exact collection was mapped before."""
    ids = np.asarray(ids, dtype=np.int64)
    key = fingerprint(ids, matrix, method, seed)
    folder = Path(cache_folder)
    cache = folder / f"map-{method}-{key}.npz"
    if cache.is_file():
        try:
            with np.load(cache) as saved:
                if np.array_equal(saved["ids"], ids):
                    return MapLayout(ids, saved["xy"].astype(np.float32), method, key)
        except (OSError, ValueError, KeyError) as error:
            log.warning("%s: unreadable map cache (%s); recomputing", cache, error)
    log.info("computing a %s map of %d images (once; cached in %s)", method, len(ids), folder)
    xy = compute_layout(matrix, method, seed)
    try:  # only a cache: a read-only collection or a full disk still gets its map
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"map-{method}-*.npz"):
            old.unlink(missing_ok=True)  # only the current collection's layout is worth keeping
        with atomic_path(cache, fsync=False) as tmp:
            np.savez(tmp, ids=ids, xy=xy)
    except (OSError, StoreError) as error:
        log.warning("%s: map not cached (%s)", cache, error)
    return MapLayout(ids, xy, method, key)


def cache_file(
    ids: np.ndarray, matrix: np.ndarray, cache_folder: str | Path, method: str = "tsne", seed: int = 0
) -> Path:
    """Where ``cached_layout`` keeps (or would keep) the layout of this exact collection."""
    key = fingerprint(np.asarray(ids, dtype=np.int64), matrix, method, seed)
    return Path(cache_folder) / f"map-{method}-{key}.npz"


def is_cached(
    ids: np.ndarray, matrix: np.ndarray, cache_folder: str | Path, method: str = "tsne", seed: int = 0
) -> bool:
    """Whether ``cached_layout`` would answer from disk for this exact collection."""
    return cache_file(ids, matrix, cache_folder, method, seed).is_file()


def nearest_neighbours(matrix: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For every row, the indices and cosine similarities of its ``k`` nearest other rows (chunked: flat memory)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    n = matrix.shape[0]
    k = max(0, min(k, n - 1))
    indices = np.zeros((n, k), dtype=np.int64)
    scores = np.zeros((n, k), dtype=np.float32)
    if k == 0:
        return indices, scores
    for start in range(0, n, chunk):
        sims = matrix[start : start + chunk] @ matrix.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf  # a point is not its own neighbour
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        indices[start : start + chunk] = top
        scores[start : start + chunk] = np.take_along_axis(sims, top, axis=1)
    return indices, scores
