"""The values a store hands out: an indexed image, the cheap state of a file, and a search hit."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IMAGE_SPACE = "image"  # the pooled encoder features, searched by cosine similarity


@dataclass
class FileState:
    """What the indexer needs to decide whether a file changed: no vectors are loaded."""

    path: str
    size: int
    mtime: float
    sha: str
    model: str
    status: str


@dataclass
class ImageRecord:
    """One indexed file with its features. ``status`` is ``"ok"`` or ``"failed"`` (then ``error`` says why)."""

    path: str
    size: int
    mtime: float
    sha: str
    model: str
    status: str
    error: str | None
    pooled: np.ndarray | None
    logits: np.ndarray | None
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True)
class VectorHit:
    """A store search hit: the image id, its path and the cosine similarity to the query."""

    id: int
    path: str
    score: float


def to_blob(vector: np.ndarray | None) -> bytes | None:
    if vector is None:
        return None
    return np.ascontiguousarray(vector, dtype=np.float32).reshape(-1).tobytes()


def from_blob(blob: bytes | None) -> np.ndarray | None:
    if blob is None:
        return None
    # copy: frombuffer views are read-only and would pin the sqlite row buffer
    return np.frombuffer(blob, dtype=np.float32).copy()


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
