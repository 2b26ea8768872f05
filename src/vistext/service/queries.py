"""Answering many searches at once: query-text embeddings are cached, and concurrent searches run as batches.

Under load a server's searches arrive together. One by one, each pays a transformer pass for its text and a
full scan of the vector matrix; batched, the texts share one padded forward pass and the queries share one
scan (a matrix product instead of many matrix-vector products). ``Coalescer`` forms the batches from whatever
is waiting, so a lone query is answered at once.

Where the store searches in another process (PostgreSQL), texts and searches are two stages on threads of their
own: the next batch's texts are embedded while this batch waits for the database (mixed new and popular texts,
16 clients, 10k photos: 5-17 % more requests a second, docs/benchmarks.md). Where the search is this process's
own work (FAISS), one thread does both: two stages made smaller batches that cost more CPU than they freed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from vistext.service.batching import Coalescer

if TYPE_CHECKING:
    from vistext.store import Store
    from vistext.store.records import VectorHit

TEXT_CACHE_SIZE = 8192  # query embeddings kept (~2 KB each: ~16 MB)
MAX_BATCH = 64


def one_math_thread() -> None:
    """Limit OpenMP (FAISS, and the BLAS FAISS calls) to one thread in the calling thread, and BLAS to one
    thread in the process.

    The batch worker's parallelism is the batch itself. With a second OpenMP thread, a search on a machine
    whose cores are busy answering requests spends its time spin-waiting: measured with one other busy thread,
    10k x 514 single-query search 14.7 ms with two threads, 7.4 ms with one; a batch of 16, 2.6 vs 1.1 ms per
    query. The OpenMP limit is thread-local. NumPy's OpenBLAS has one setting for the whole process, and its
    idle worker busy-waits after every small product a query costs (the hubness correction, the concept
    scores): with 16 clients asking texts half of which are new, p50 248-281 ms with it, 118-144 ms without
    (1,000 photos, a 2-core machine at load 9-12). A server's requests are its parallelism, so one is right.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="openmp")
    threadpool_limits(1, user_api="blas")


@dataclass(frozen=True, eq=False)
class Query:
    """The ``depth`` best hits in ``space`` for a ``vector``, or for a ``text`` embedded by the joint model."""

    space: str
    depth: int
    vector: np.ndarray | None = None
    text: str | None = None
    restrict: np.ndarray | None = None  # only these image ids (a filter's), searched on its own


Readable = Callable[[str, np.ndarray, np.ndarray], np.ndarray]
QueryFor = Callable[[str, int, "np.ndarray | None"], Query]  # (text, depth, restrict) -> a query in one space


def query_maker(space: str, encode_texts: Callable[[list[str]], np.ndarray] | None = None) -> QueryFor:
    """Texts -> queries in ``space``: embedded by the batcher (the bundled models), or by ``encode_texts`` (a
    CLIP-family model's text tower) when given."""

    def query_for(text: str, depth: int, restrict: np.ndarray | None) -> Query:
        if encode_texts is None:
            return Query(space, depth, text=text, restrict=restrict)
        return Query(space, depth, vector=encode_texts([text])[0], restrict=restrict)

    return query_for


class QueryBatcher:
    """Batched, cached search over one store. ``encode_texts`` maps N texts to an (N, d) array; ``readable``
    maps (space, query vector, the index's cosines) to the scores a person reads (default: the cosines)."""

    def __init__(
        self,
        store: Callable[[], Store],
        encode_texts: Callable[[list[str]], np.ndarray],
        cache_size: int = TEXT_CACHE_SIZE,
        readable: Readable | None = None,
    ) -> None:
        self._store = store
        self._encode_texts = encode_texts
        self._readable = readable
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._searches: Coalescer[Query, list[VectorHit]] = Coalescer(
            self._search_batch, MAX_BATCH, name="vistext-searches", thread_init=one_math_thread
        )
        self._texts: Coalescer[str, np.ndarray] = Coalescer(
            self._embed_batch, MAX_BATCH, name="vistext-texts", thread_init=one_math_thread
        )

    # ---- text embeddings ----------------------------------------------------------------------------------
    def _embed_batch(self, texts: list[str]) -> list[np.ndarray]:
        wanted = list(dict.fromkeys(texts))  # the same text asked twice in one batch is embedded once
        with self._lock:
            known = {t: self._cache[t] for t in wanted if t in self._cache}
        missing = [t for t in wanted if t not in known]
        if missing:
            vectors = np.asarray(self._encode_texts(missing), dtype=np.float32)
            with self._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    known[text] = self._cache[text] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return [known[t] for t in texts]

    # ---- searches -----------------------------------------------------------------------------------------
    def search(self, query: Query) -> list[VectorHit]:
        """Up to ``query.depth`` hits, best first; runs in one batch with the searches waiting beside it."""
        return self._searches(query)

    def submit(self, query: Query) -> Future[list[VectorHit]]:
        """``search`` without blocking: the future resolves when the query's batch has run."""
        if query.vector is not None or query.text is None or not self._store().searches_elsewhere:
            return self._searches.submit(query)
        with self._lock:
            cached = self._cache.get(query.text)
        if cached is not None:
            return self._searches.submit(replace(query, vector=cached))
        answer: Future[list[VectorHit]] = Future()

        def embedded(text: Future[np.ndarray]) -> None:  # on the text stage's thread: hand over, never wait
            error = text.exception()
            if error is not None:
                _fail(answer, error)
            else:
                searched = self._searches.submit(replace(query, vector=text.result()))
                searched.add_done_callback(lambda done: _settle(answer, done))

        self._texts.submit(query.text).add_done_callback(embedded)
        return answer

    def _search_batch(self, queries: list[Query]) -> list[list[VectorHit]]:
        texts = [q.text for q in queries if q.vector is None and q.text is not None]
        by_text = dict(zip(texts, self._embed_batch(texts), strict=True)) if texts else {}
        vectors = [q.vector if q.vector is not None else by_text[q.text] for q in queries]  # type: ignore[index]
        answers: list[list[VectorHit]] = [[] for _ in queries]
        store = self._store()
        for space in dict.fromkeys(q.space for q in queries if q.restrict is None):
            rows = [i for i, q in enumerate(queries) if q.space == space and q.restrict is None]
            depth = max(queries[i].depth for i in rows)
            hits = store.search(space, np.stack([vectors[i] for i in rows]), depth)
            for i, found in zip(rows, hits, strict=True):
                answers[i] = self._rescored(space, vectors[i], found[: queries[i].depth])
        for i, query in enumerate(queries):  # filtered: each has its own ids to search among
            if query.restrict is not None:
                found = store.search(query.space, vectors[i][None], query.depth, restrict=query.restrict)[0]
                answers[i] = self._rescored(query.space, vectors[i], found)
        return answers

    def _rescored(self, space: str, query: np.ndarray, hits: list[VectorHit]) -> list[VectorHit]:
        if self._readable is None or not hits:
            return hits
        from vistext.store.records import VectorHit

        scores = self._readable(space, query, np.array([h.score for h in hits], dtype=np.float32))
        return [VectorHit(h.id, h.path, s) for h, s in zip(hits, np.asarray(scores, dtype=float).tolist(), strict=True)]


def _settle(target: Future[list[VectorHit]], source: Future[list[VectorHit]]) -> None:
    """Give ``target`` the outcome of ``source`` (done)."""
    error = source.exception()
    if error is not None:
        _fail(target, error)
    elif target.set_running_or_notify_cancel():
        target.set_result(source.result())


def _fail(target: Future[list[VectorHit]], error: BaseException) -> None:
    if target.set_running_or_notify_cancel():
        target.set_exception(error)
