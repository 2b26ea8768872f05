"""One vector index per space: exact inner product for small collections, HNSW for large ones.

Vectors are L2-normalised float32, so inner product is cosine similarity. The index keeps its own
label -> image id table instead of relying on ``IndexIDMap2`` alone, because HNSW cannot delete or
replace vectors: a removed or re-indexed image leaves a dead label that searches skip with an
``IDSelectorBitmap`` (HNSW still walks through dead nodes, so recall is unharmed), and once dead labels
exceed ``COMPACT_FRACTION`` of the index it is rebuilt from its own stored vectors. On disk the index is
written as an ``IndexIDMap2`` whose id map is that table (dead labels as -1), so the file is a plain,
self-describing FAISS index.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from vistext.errors import StoreError
from vistext.paths import atomic_path

log = logging.getLogger(__name__)

FLAT, HNSW = "flat", "hnsw"
# Exact search up to here: an exact query reads every vector, ~0.44 ms per million floats on one core, so ~11 ms
# at 20k x 1280 (the widest space), and concurrent queries share one BLAS pass; recall is perfect. Above it, HNSW
# with these parameters: bench/search.py measured recall@10 0.979 at p50 0.30 ms on GloVe 6B 50d (390k real
# vectors, angular) and 1.000 at 0.35-0.61 ms on the photos' 514-d joint and 1280-d pooled embeddings, where
# exact search already costs several ms (figures and the sweep: docs/scaling.md). M=16 reaches only 0.957 at
# efSearch=128 on GloVe; a larger efConstruction builds several times slower for +0.01.
HNSW_THRESHOLD = 20_000
HNSW_M, EF_CONSTRUCTION, EF_SEARCH = 32, 80, 128
COMPACT_FRACTION = 0.2
# FAISS picks its exact-search kernel by comparing the number of queries with a global threshold: below it, a
# scan per query (fastest for 1-3 queries); from it, one BLAS matrix product for the whole batch. The default
# (128,000 in faiss 1.15) never batches, so a server's 16 concurrent queries cost 16 scans: measured on
# 10k x 1280, 5 ms per query either way, against 0.8 ms per query as one product.
BATCH_KERNEL_FROM = 4
SCAN_THRESHOLD = int(faiss.cvar.distance_compute_blas_threshold)
# A restricted HNSW search (a filter) scores a subset this small exactly, since a graph walk that may only
# return a few nodes can end with fewer than k of them; a larger subset is searched through the graph with a
# selector and a search depth widened by how selective it is.
EXACT_SUBSET = 20_000


class VectorIndex:
    """Cosine-similarity search over vectors identified by integer ids (``images.id``)."""

    def __init__(
        self,
        dim: int,
        kind: str = FLAT,
        *,
        hnsw_m: int = HNSW_M,
        ef_construction: int = EF_CONSTRUCTION,
        ef_search: int = EF_SEARCH,
    ) -> None:
        if kind not in (FLAT, HNSW):
            raise StoreError(f"unknown vector index kind {kind!r}; known: {FLAT}, {HNSW}")
        self.dim = int(dim)
        self.kind = kind
        self.ef_search = ef_search
        self._hnsw_m = hnsw_m
        self._ef_construction = ef_construction
        self.index: Any = self._new_index()  # FAISS's stubs lack the HNSW/flat attributes used here
        self._labels = np.empty(0, dtype=np.int64)  # label -> image id, -1 once dead
        self._where: dict[int, int] = {}  # image id -> live label
        self._selector: tuple[faiss.IDSelectorBitmap, np.ndarray] | None = None
        self._holder: faiss.Index | None = None  # keeps a loaded IndexIDMap2 (owner of self.index) alive

    def _new_index(self) -> Any:
        if self.kind == FLAT:
            return faiss.IndexFlatIP(self.dim)
        index = faiss.IndexHNSWFlat(self.dim, self._hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self._ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    # ---- size ----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._where)

    @property
    def dead(self) -> int:
        return int(self.index.ntotal) - len(self._where)

    def ids(self) -> np.ndarray:
        return np.fromiter(self._where.keys(), dtype=np.int64, count=len(self._where))

    # ---- changes -------------------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace vectors (already L2-normalised, shape (n, dim))."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        if vectors.shape[1] != self.dim:
            raise StoreError(f"vector dimension {vectors.shape[1]} does not match the index dimension {self.dim}")
        self._kill(ids)
        start = int(self.index.ntotal)
        self.index.add(vectors)
        self._labels = np.concatenate([self._labels, ids])
        self._where.update(zip(ids.tolist(), range(start, start + len(ids)), strict=True))
        self._selector = None
        if self.dead > COMPACT_FRACTION * self.index.ntotal:
            self.compact()

    def remove(self, ids: np.ndarray) -> None:
        self._kill(np.asarray(ids, dtype=np.int64).reshape(-1))
        if self.dead > COMPACT_FRACTION * self.index.ntotal:
            self.compact()

    def _kill(self, ids: np.ndarray) -> None:
        for image_id in ids.tolist():
            label = self._where.pop(image_id, None)
            if label is not None:
                self._labels[label] = -1
                self._selector = None

    def compact(self, kind: str | None = None) -> None:
        """Rebuild without dead labels (and optionally as another kind, e.g. flat -> hnsw when it grows)."""
        alive = np.flatnonzero(self._labels >= 0)
        ids = self._labels[alive]
        vectors = self._reconstruct(alive)
        self.kind = kind or self.kind
        self.index = self._new_index()
        self._holder = None
        self._labels = np.empty(0, dtype=np.int64)
        self._where = {}
        self._selector = None
        for start in range(0, len(ids), 65536):
            self.index.add(vectors[start : start + 65536])
        self._labels = ids.copy()
        self._where = dict(zip(ids.tolist(), range(len(ids)), strict=True))

    def _reconstruct(self, labels: np.ndarray) -> np.ndarray:
        storage: Any = self.index if self.kind == FLAT else faiss.downcast_index(self.index.storage)
        everything = faiss.rev_swig_ptr(storage.get_xb(), int(self.index.ntotal) * self.dim)
        return np.array(everything, copy=True).reshape(-1, self.dim)[labels]

    # ---- search --------------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, restrict: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (Q, min(k, n)), best first, over every vector (n = len(self)) or only those of
        the image ids in ``restrict`` (n = how many of them are here). Queries must be L2-normalised."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise StoreError(f"query shape {queries.shape} does not match the index dimension {self.dim}")
        labels = None if restrict is None else self._labels_of(restrict)
        k = min(int(k), len(self) if labels is None else len(labels))
        if k <= 0:
            return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
        if labels is not None and self.kind == HNSW and len(labels) <= EXACT_SUBSET:
            return self._exact_subset(queries, k, labels)
        params: Any = faiss.SearchParameters()
        if self.kind == HNSW:
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            widen = 1 if labels is None else max(1, len(self) // max(1, len(labels)))
            params.efSearch = max(self.ef_search, k) * min(widen, 16)
        keep: Any = None
        if labels is not None:
            keep = faiss.IDSelectorBatch(len(labels), faiss.swig_ptr(labels))
            params.sel = keep
        elif self.dead:
            params.sel = self._alive_selector()
        # results are the same either way (exact search); only the speed differs
        faiss.cvar.distance_compute_blas_threshold = (
            BATCH_KERNEL_FROM if len(queries) >= BATCH_KERNEL_FROM else SCAN_THRESHOLD
        )
        scores, found = self.index.search(queries, k, params=params)
        del keep  # the selector reads ``labels`` until the search returns
        ids = np.where(found >= 0, self._labels[np.maximum(found, 0)], -1)
        return scores, ids

    def _labels_of(self, restrict: np.ndarray) -> np.ndarray:
        """The live labels of these image ids (ids not in the index are ignored), sorted."""
        live = np.flatnonzero(self._labels >= 0)
        order = np.argsort(self._labels[live], kind="stable")
        ids, labels = self._labels[live][order], live[order]  # live ids ascending, with their labels
        wanted = np.asarray(restrict, dtype=np.int64).reshape(-1)
        at = np.minimum(np.searchsorted(ids, wanted), max(len(ids) - 1, 0))
        found = labels[at[ids[at] == wanted]] if len(ids) else np.empty(0, np.int64)
        return np.unique(found)

    def _exact_subset(self, queries: np.ndarray, k: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        storage: Any = self.index if self.kind == FLAT else faiss.downcast_index(self.index.storage)
        everything = faiss.rev_swig_ptr(storage.get_xb(), int(self.index.ntotal) * self.dim)
        vectors = np.asarray(everything).reshape(-1, self.dim)[labels]  # copies only the subset
        scores = queries @ vectors.T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, top, axis=1), self._labels[labels[top]]

    def _alive_selector(self) -> faiss.IDSelectorBitmap:
        if self._selector is None:
            bitmap = np.packbits(self._labels >= 0, bitorder="little")
            self._selector = (faiss.IDSelectorBitmap(len(self._labels), faiss.swig_ptr(bitmap)), bitmap)
        return self._selector[0]

    # ---- persistence ---------------------------------------------------------------------------------------
    def serialize(self) -> np.ndarray:
        """The index as FAISS's bytes (uint8): an ``IndexIDMap2`` whose id map is the label table."""
        empty = faiss.IndexFlatIP(self.dim)
        wrapper = faiss.IndexIDMap2(empty)  # FAISS only wraps empty indexes: swap ours in afterwards
        wrapper.own_fields = False
        wrapper.index = self.index
        wrapper.ntotal = self.index.ntotal
        faiss.copy_array_to_vector(self._labels, wrapper.id_map)
        return np.asarray(faiss.serialize_index(wrapper), dtype=np.uint8)

    @classmethod
    def deserialize(cls, data: np.ndarray, *, ef_search: int = EF_SEARCH, where: str = "vector index") -> VectorIndex:
        """The index ``serialize`` wrote; anything else is a one-line ``StoreError`` naming ``where``."""
        try:
            wrapper = faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))
        except RuntimeError as error:
            raise StoreError(f"{where}: cannot read vector index: {str(error).splitlines()[0]}") from None
        if not isinstance(wrapper, faiss.IndexIDMap2):
            raise StoreError(f"{where}: not a vistext vector index")
        inner: Any = faiss.downcast_index(wrapper.index)
        kind = HNSW if isinstance(inner, faiss.IndexHNSWFlat) else FLAT
        self = cls(inner.d, kind, ef_search=ef_search)
        self.index, self._holder = inner, wrapper
        if kind == HNSW:
            inner.hnsw.efSearch = ef_search
        self._labels = faiss.vector_to_array(wrapper.id_map).astype(np.int64)
        alive = np.flatnonzero(self._labels >= 0)
        self._where = dict(zip(self._labels[alive].tolist(), alive.tolist(), strict=True))
        return self

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename), so a crash never leaves a half-written index behind."""
        data = self.serialize()
        with atomic_path(path) as temporary:
            data.tofile(temporary)

    @classmethod
    def load(cls, path: Path, *, ef_search: int = EF_SEARCH) -> VectorIndex:
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as error:
            raise StoreError(f"{path}: cannot read vector index: {error.strerror or error}") from None
        return cls.deserialize(data, ef_search=ef_search, where=str(path))
