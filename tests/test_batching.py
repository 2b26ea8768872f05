"""Coalescing concurrent calls: real threads, real batches, real search results."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vistext.errors import StoreError
from vistext.service.batching import Coalescer
from vistext.service.queries import Query, QueryBatcher
from vistext.store import open_store


def test_a_lone_call_runs_at_once_as_a_batch_of_one() -> None:
    coalescer = Coalescer(lambda items: [x * 2 for x in items])
    assert coalescer(21) == 42
    assert (coalescer.batches, coalescer.items) == (1, 1)


def test_concurrent_calls_share_batches_and_each_gets_its_own_answer() -> None:
    sizes: list[int] = []

    def slow_double(items: list[int]) -> list[int]:
        sizes.append(len(items))
        time.sleep(0.02)  # long enough for the other callers to queue behind the first batch
        return [x * 2 for x in items]

    coalescer = Coalescer(slow_double, max_batch=8)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(coalescer, range(40)))
    assert answers == [x * 2 for x in range(40)]
    assert sum(sizes) == 40
    assert max(sizes) > 1 and max(sizes) <= 8
    assert coalescer.batches < 40


def test_a_failing_item_fails_only_its_own_caller() -> None:
    barrier = threading.Barrier(6)

    def strict(items: list[int]) -> list[int]:
        if any(x < 0 for x in items):
            raise ValueError("negative")
        return items

    coalescer = Coalescer(strict)

    def call(x: int) -> int | str:
        barrier.wait()
        try:
            return coalescer(x)
        except ValueError as error:
            return str(error)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(call, [1, 2, -3, 4, 5, 6]))
    assert answers == [1, 2, "negative", 4, 5, 6]


def test_wrong_result_count_is_an_error_for_the_caller() -> None:
    coalescer = Coalescer(lambda items: [])
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        coalescer(1)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


@pytest.mark.parametrize("elsewhere", [False, True], ids=["one-stage", "texts-then-searches"])
def test_batched_searches_over_two_spaces_match_one_by_one_searches(
    tmp_path: Path, joint_records: Callable[..., Any], elsewhere: bool
) -> None:
    """Both ways of batching (one stage where the store searches in this process; texts embedded beside the
    searches where it searches elsewhere, as PostgreSQL does) give every query its exact hits, each text
    embedded once."""
    records, pooled, joint = joint_records(300)
    words = {f"text {i}": joint[i] * 3.0 for i in range(0, 300, 7)}  # a fake text encoder: text -> vector
    encoded: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        encoded.append(list(texts))
        time.sleep(0.01)
        return np.stack([words[t] for t in texts])

    with open_store(tmp_path / "catalogue.sqlite") as store:
        store.add(records)
        store.searches_elsewhere = elsewhere  # type: ignore[misc]
        batcher = QueryBatcher(lambda: store, encode)
        image_ids = [store.get(r.path).id for r in records]  # type: ignore[union-attr]
        queries = [Query("image", 5 + i % 4, vector=_unit(pooled[i])) for i in range(0, 300, 11)]
        queries += [Query("joint:t", 3, text=t) for t in words] * 2  # every text asked twice
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(batcher.search, queries))
        for query, hits in zip(queries, answers, strict=True):
            assert len(hits) == query.depth
            base = pooled if query.space == "image" else joint
            vector = query.vector if query.vector is not None else words[query.text]  # type: ignore[index]
            best = np.argsort(-(_unit(base) @ _unit(vector)))[: query.depth]
            assert [image_ids[i] for i in best] == [h.id for h in hits]
            assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
        assert sum(len(batch) for batch in encoded) == len(words)  # each text embedded once, then cached
        assert batcher.search(Query("joint:t", 3, text="text 0"))
        if elsewhere:  # a text that cannot be embedded fails its own caller, through the text stage
            with pytest.raises(KeyError):
                batcher.search(Query("joint:t", 3, text="never seen"))
    assert sum(len(batch) for batch in encoded) == len(words) + elsewhere  # and the one that failed


def test_a_query_for_an_unknown_space_fails_alone(tmp_path: Path, joint_records: Callable[..., Any]) -> None:
    records, pooled, _ = joint_records(50)
    with open_store(tmp_path / "catalogue.sqlite") as store:
        store.add(records)
        batcher = QueryBatcher(lambda: store, lambda texts: np.zeros((len(texts), 8), np.float32))
        barrier = threading.Barrier(4)

        def ask(query: Query) -> object:
            barrier.wait()
            try:
                return [h.id for h in batcher.search(query)]
            except StoreError as error:
                return str(error)

        queries = [Query("image", 3, vector=_unit(pooled[i])) for i in range(3)] + [Query("nope", 3, vector=pooled[0])]
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, queries))
    assert all(isinstance(a, list) and len(a) == 3 for a in answers[:3])
    assert "no vector space 'nope'" in str(answers[3])


def test_similar_images_never_load_the_text_model(tmp_path: Path, joint_records: Callable[..., Any]) -> None:
    from vistext.service import Service

    records, _, _ = joint_records(20)
    db = tmp_path / "catalogue.sqlite"
    with open_store(db) as store:
        store.add(records)
    with Service(db=db, joint_model=tmp_path / "no-such-model", progress=False) as service:
        result = service.similar(1, k=3)
        assert 1 not in [h.id for h in result.results] and len(result.results) == 3
        assert not service.text_model_loaded
