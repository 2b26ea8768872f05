"""Near-duplicate detection over stored image vectors: pairs above a cosine threshold, grouped by connected
components (a resized copy of a cropped copy still lands in the original's group)."""

from __future__ import annotations

import numpy as np

from vistext.errors import UsageError


def similar_pairs(matrix: np.ndarray, threshold: float, chunk: int = 1024) -> list[tuple[int, int, float]]:
    """Every row pair ``(i, j, cosine)`` with ``i < j`` whose cosine similarity is at least ``threshold``.

    Rows are L2-normalised here; the full similarity matrix is never held (``chunk`` rows at a time)."""
    if not -1.0 <= threshold <= 1.0:
        raise UsageError(f"the similarity threshold must be between -1 and 1, got {threshold}")
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise UsageError(f"expected a 2-D matrix of vectors, got shape {matrix.shape}")
    matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    pairs: list[tuple[int, int, float]] = []
    for start in range(0, matrix.shape[0], chunk):
        sims = matrix[start : start + chunk] @ matrix[start:].T  # only columns j >= the chunk's first row
        rows, cols = np.nonzero(sims >= threshold)
        keep = start + cols > start + rows  # j > i: each pair once, never a row with itself
        for row, col in zip(rows[keep].tolist(), cols[keep].tolist(), strict=True):
            pairs.append((start + row, start + col, float(sims[row, col])))
    return pairs


def connected_groups(n: int, pairs: list[tuple[int, int, float]]) -> list[list[int]]:
    """The connected components of the graph on ``n`` nodes with edges ``pairs`` that have two or more nodes,
    each sorted, largest group first (ties by first node)."""
    parent = list(range(n))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for i, j, _ in pairs:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for node in range(n):
        members.setdefault(root(node), []).append(node)
    groups = [sorted(group) for group in members.values() if len(group) > 1]
    return sorted(groups, key=lambda group: (-len(group), group[0]))


def pair_precision_recall(predicted: set[tuple[int, int]], truth: set[tuple[int, int]]) -> tuple[float, float]:
    """Precision and recall of ``predicted`` unordered pairs (each as ``(low, high)``) against ``truth``."""
    hits = len(predicted & truth)
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(truth) if truth else 1.0
    return precision, recall


def group_pairs(groups: list[list[int]]) -> set[tuple[int, int]]:
    """Every unordered pair ``(low, high)`` of items that share a group."""
    return {(a, b) for group in groups for pos, a in enumerate(sorted(group)) for b in sorted(group)[pos + 1 :]}
