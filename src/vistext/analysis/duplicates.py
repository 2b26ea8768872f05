"""Groups of linked photos (copies by perceptual hash, similar shots by image features), in memory flat in the
number of linked pairs: links are found one block of rows at a time and merged at once into a union-find over
an int32 array, so no pair outlives its block. Groups, not pairs, are the product: a resized copy of a cropped
copy still lands in the original's group (connected components)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from vistext.analysis.picture_hash import COPY_DISTANCE, COPY_MIN_COSINE, SURE_DISTANCE, hamming_block, pair_distance
from vistext.errors import UsageError

# scores held at once per block (64 MB of float32) whatever the collection's size: rows enough for an efficient
# matrix product (~900 at 18,000 photos), few enough that memory stays far below the vectors' own at scale
BLOCK_CELLS = 16_000_000
LINK_CELLS = 2_000_000  # mask cells turned into index pairs at once (at most 16 MB of links, however dense)

_PAIRS_AT_ONCE = 4096
Links = tuple[np.ndarray, np.ndarray]  # (rows, cols) of linked pairs, as two index arrays


def _rows_per_block(n: int, block_cells: int) -> int:
    return max(1, block_cells // max(n, 1))


def cosine_links(matrix: np.ndarray, threshold: float, block_cells: int = BLOCK_CELLS) -> Iterator[Links]:
    """Blocks of pairs ``i < j`` whose rows have cosine similarity at least ``threshold`` (rows are
    L2-normalised here); only ``block_cells`` scores are held at a time."""
    if not -1.0 <= threshold <= 1.0:
        raise UsageError(f"the similarity threshold must be between -1 and 1, got {threshold}")
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise UsageError(f"expected a 2-D matrix of vectors, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if not np.allclose(norms, 1.0, atol=1e-4):  # rows a caller already normalised are not copied again
        matrix = matrix / np.maximum(norms, 1e-12)
    step = _rows_per_block(len(matrix), block_cells)
    for start in range(0, len(matrix), step):
        linked = matrix[start : start + step] @ matrix[start:].T >= threshold  # only columns j >= the first row
        yield from _upper(start, linked)


def hash_links(codes: np.ndarray, max_distance: int, block_cells: int = BLOCK_CELLS) -> Iterator[Links]:
    """Blocks of pairs ``i < j`` whose perceptual hashes (``codes``: n x k int64, one column per hash kind)
    differ in at most ``max_distance`` bits over all columns together."""
    codes = np.asarray(codes, dtype=np.int64).reshape(len(codes), -1)
    step = _rows_per_block(len(codes), block_cells)
    for start in range(0, len(codes), step):
        yield from _upper(start, hamming_block(codes[start : start + step], codes[start:]) <= max_distance)


def copy_links(
    codes: np.ndarray,
    matrix: np.ndarray,
    sure: int = SURE_DISTANCE,
    most: int = COPY_DISTANCE,
    min_cosine: float = COPY_MIN_COSINE,
) -> Iterator[Links]:
    """Blocks of copy pairs: hashes (``codes``) at most ``sure`` bits apart, or at most ``most`` bits apart with
    L2-normalised feature rows (``matrix``) at cosine ``min_cosine`` or above."""
    codes = np.asarray(codes, dtype=np.int64).reshape(len(codes), -1)
    for rows, cols in hash_links(codes, most):
        far = np.flatnonzero(pair_distance(codes[rows], codes[cols]) > sure)
        agree = np.ones(len(rows), dtype=bool)
        for first in range(0, len(far), _PAIRS_AT_ONCE):  # a few feature rows at a time, however many pairs
            part = far[first : first + _PAIRS_AT_ONCE]
            agree[part] = np.einsum("ij,ij->i", matrix[rows[part]], matrix[cols[part]]) >= min_cosine
        yield rows[agree], cols[agree]


def _upper(start: int, linked: np.ndarray) -> Iterator[Links]:
    """The pairs ``i < j`` of a block's mask (rows and columns both from ``start``), a few rows at a time so
    that a dense block never turns into more than ``LINK_CELLS`` index pairs at once."""
    step = _rows_per_block(linked.shape[1], LINK_CELLS)
    for first in range(0, len(linked), step):
        rows, cols = np.nonzero(linked[first : first + step])
        rows += start + first
        cols += start
        keep = cols > rows
        yield rows[keep].astype(np.int32), cols[keep].astype(np.int32)


def linked_groups(n: int, links: Iterable[Links]) -> list[list[int]]:
    """The connected components with two or more of ``n`` nodes joined by ``links``, each sorted, largest group
    first (ties by first node). Each block of links is merged as it comes and then dropped."""
    parent = np.arange(n, dtype=np.int32)
    for rows, cols in links:
        parent = _merge(parent, np.asarray(rows, dtype=np.int32), np.asarray(cols, dtype=np.int32))
    roots = _flatten(parent)
    order = np.argsort(roots, kind="stable")
    cuts = np.flatnonzero(np.diff(roots[order])) + 1
    groups = [part.tolist() for part in np.split(order, cuts) if len(part) > 1]
    return sorted(groups, key=lambda group: (-len(group), group[0]))


def _flatten(parent: np.ndarray) -> np.ndarray:
    """Point every node straight at its root (pointer jumping)."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def _merge(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union every pair (a[k], b[k]): roots hook under the smaller root they are linked to, until each pair
    shares a root. Every hook points to a smaller index, so no cycle can form."""
    while len(a):
        parent = _flatten(parent)
        root_a, root_b = parent[a], parent[b]
        apart = root_a != root_b
        if not apart.any():
            break
        root_a, root_b, a, b = root_a[apart], root_b[apart], a[apart], b[apart]
        np.minimum.at(parent, np.maximum(root_a, root_b), np.minimum(root_a, root_b))
    return parent


def pair_precision_recall(predicted: set[tuple[int, int]], truth: set[tuple[int, int]]) -> tuple[float, float]:
    """Precision and recall of ``predicted`` unordered pairs (each as ``(low, high)``) against ``truth``."""
    hits = len(predicted & truth)
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(truth) if truth else 1.0
    return precision, recall


def group_pairs(groups: list[list[int]]) -> set[tuple[int, int]]:
    """Every unordered pair ``(low, high)`` of items that share a group."""
    return {(a, b) for group in groups for pos, a in enumerate(sorted(group)) for b in sorted(group)[pos + 1 :]}
