"""The in-memory vector index of each embedding space, kept current with the catalogue.

On first use a space's index is loaded from its ``.faiss`` file (``index_files``) and caught up with only the
rows changed since the catalogue generation it reflects, or built from the catalogue when the file is missing,
damaged or ahead of it. A flat index becomes HNSW once the space outgrows ``hnsw_threshold``. The indexes are
saved back only by ``save_changed`` (the store's ``flush``/``close``). Callers hold the store's lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vistext.errors import StoreError
from vistext.store.records import from_blob, l2_normalise
from vistext.store.sqlite.catalogue import Catalogue
from vistext.store.sqlite.connection import writable
from vistext.store.sqlite.index_files import IndexFiles
from vistext.store.sqlite.vectors import FLAT, HNSW, VectorIndex

log = logging.getLogger(__name__)

_BUILD_PAGE = 8192


@dataclass
class CachedIndex:
    index: VectorIndex
    generation: int  # catalogue generation the index reflects
    dirty: bool  # differs from the file on disk


@dataclass
class SpaceIndexes:
    """One ``CachedIndex`` per space of ``catalogue`` (see module docstring)."""

    path: Path
    catalogue: Catalogue
    files: IndexFiles
    hnsw_threshold: int
    ef_search: int
    cached: dict[str, CachedIndex] = field(default_factory=dict)

    def read_space(self, space: str, since: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, normalised vectors) from the catalogue; with ``since`` rows that left the space get NaN rows."""
        ids: list[int] = []
        rows: list[np.ndarray | None] = []
        for image_id, blob in self.catalogue.vectors.pages(space, since):
            ids.append(image_id)
            rows.append(from_blob(blob))
        dims = {len(row) for row in rows if row is not None}
        if len(dims) > 1:
            raise StoreError(f"{self.path}: space {space!r} mixes vector dimensions {sorted(dims)}; re-index it")
        dim = dims.pop() if dims else 0
        matrix = np.full((len(ids), dim), np.nan, dtype=np.float32)
        for position, row in enumerate(rows):
            if row is not None:
                matrix[position] = row
        return np.asarray(ids, dtype=np.int64), l2_normalise(matrix) if len(ids) else matrix

    def unchanged(self, space: str, generation: int) -> VectorIndex | None:
        """The space's cached index when it reflects catalogue ``generation`` (read by the caller without the
        store's lock); None when it must be loaded, built or caught up (``current``, under the lock)."""
        cached = self.cached.get(space)
        return cached.index if cached is not None and cached.generation == generation else None

    def current(self, space: str) -> VectorIndex | None:
        """The space's index, current with the catalogue: cached, loaded from its file, or rebuilt."""
        cached = self.cached.get(space)
        if cached is None:
            cached = self._load(space) or self._build(space)
            if cached is None:
                return None
            self.cached[space] = cached
        if cached.generation != self.catalogue.generation():
            self._catch_up(space, cached)
        return cached.index

    def _load(self, space: str) -> CachedIndex | None:
        loaded = self.files.load(space, self.catalogue.identity())
        if loaded is None:
            return None
        index, generation = loaded
        if generation > self.catalogue.generation():  # made from another (newer) catalogue than this one
            log.info("%s: the index file of %r is ahead of the catalogue; rebuilding it", self.path, space)
            return None
        return CachedIndex(index, generation, dirty=False)

    def _build(self, space: str) -> CachedIndex | None:
        with self.catalogue.snapshot():
            generation = self.catalogue.generation()
            size = self.catalogue.vectors.count(space)
            dim = self.catalogue.vectors.dim(space)
            if dim is None:
                return None
            index = VectorIndex(dim, HNSW if size > self.hnsw_threshold else FLAT, ef_search=self.ef_search)
            ids, matrix = self.read_space(space)
        for start in range(0, len(ids), _BUILD_PAGE):
            index.add(ids[start : start + _BUILD_PAGE], matrix[start : start + _BUILD_PAGE])
        log.info("%s: built %s index of %d vectors for %r", self.path, index.kind, len(index), space)
        return CachedIndex(index, generation, dirty=True)

    def _catch_up(self, space: str, cached: CachedIndex) -> None:
        with self.catalogue.snapshot():
            generation = self.catalogue.generation()
            ids, matrix = self.read_space(space, since=cached.generation)
            expected = self.catalogue.vectors.count(space)
            gone = ~np.isfinite(matrix).all(axis=1) if len(ids) else np.zeros(0, bool)
            if (~gone).any() and matrix.shape[1] != cached.index.dim:
                raise StoreError(f"{self.path}: space {space!r} now has dimension {matrix.shape[1]}; re-index it")
            cached.index.remove(ids[gone])
            cached.index.add(ids[~gone], matrix[~gone])
            if len(cached.index) != expected:  # rows were deleted: they carry no generation, so diff the ids
                cached.index.remove(np.setdiff1d(cached.index.ids(), self.catalogue.vectors.ids(space)))
        if cached.index.kind == FLAT and len(cached.index) > self.hnsw_threshold:
            log.info("%s: %r grew past %d vectors; switching to an HNSW index", self.path, space, self.hnsw_threshold)
            cached.index.compact(HNSW)
        cached.generation, cached.dirty = generation, True

    def save_changed(self) -> None:
        """Save the indexes that changed (also for a read-only catalogue: they are caches beside it, and carry
        their own stamp); on a read-only mount they stay in memory."""
        dirty = [(space, cached) for space, cached in self.cached.items() if cached.dirty]
        if not dirty or not writable(self.path.parent):
            return
        for space, cached in dirty:
            self.files.save(space, cached.index, cached.generation, self.catalogue.identity())
            cached.dirty = False
