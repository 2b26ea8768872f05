"""The interface every store backend implements; callers only ever see this."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from vistext.store.records import FileState, ImageRecord, VectorHit


class Store(ABC):
    """A catalogue of indexed images plus one vector index per embedding space.

    Spaces: ``"image"`` (the pooled encoder features) and every key of ``ImageRecord.embeddings`` ever stored.
    Scores are cosine similarities. Use as a context manager or call ``close()`` (which persists caches).
    """

    @abstractmethod
    def file_states(self, prefix: str | None = None) -> dict[str, FileState]:
        """Path -> (size, mtime, sha, model, status) of every file (whose path starts with ``prefix``), without
        loading vectors."""

    @abstractmethod
    def add(self, records: Sequence[ImageRecord]) -> None:
        """Insert or replace (by path) ``records`` in one transaction."""

    @abstractmethod
    def remove(self, paths: Sequence[str]) -> None:
        """Forget these files; features no other file shares are deleted with them."""

    @abstractmethod
    def features_for_hash(self, sha: str, model: str) -> ImageRecord | None:
        """An ok record with this content hash and model (to reuse its features), or None."""

    @abstractmethod
    def get(self, key: int | str) -> ImageRecord | None:
        """The record with this id (int) or path (str), or None."""

    @abstractmethod
    def search(self, space: str, queries: np.ndarray, k: int) -> list[list[VectorHit]]:
        """For each query row, up to ``k`` hits by cosine similarity, best first."""

    @abstractmethod
    def vectors(self, space: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids (n,), L2-normalised float32 matrix (n, d)) of every vector in ``space``, ordered by id."""

    @abstractmethod
    def records(self, ids: Iterable[int] | None = None, status: str | None = "ok") -> Iterator[ImageRecord]:
        """Stream records (all, or these ids), optionally only those with ``status`` (None = any)."""

    @abstractmethod
    def spaces(self) -> list[str]:
        """``"image"`` plus every embedding space stored."""

    @abstractmethod
    def paths_missing(self, space: str) -> set[str]:
        """Paths of readable images without a vector in embedding ``space``."""

    @abstractmethod
    def version(self) -> int:
        """A number that changes whenever the stored images or vectors change (cheap: no vectors are read)."""

    @abstractmethod
    def count(self, status: str | None = None) -> int:
        """Number of files (with this status)."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """JSON-able summary: counts, models, spaces (dim, index kind, size), bytes on disk."""

    @abstractmethod
    def set_meta(self, key: str, value: Any) -> None:
        """Store a small JSON-able value under ``key``."""

    @abstractmethod
    def get_meta(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""

    @abstractmethod
    def flush(self) -> None:
        """Persist caches (vector index files) now rather than at ``close()``."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release the store."""

    @property
    def readonly(self) -> bool:
        """Whether the store was opened without write access (searches work, ``add``/``remove`` raise)."""
        return False

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Held by an indexing run: a second one fails at once with a ``StoreError`` naming the first.

        Backends whose server serialises writers need nothing here.
        """
        yield

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
