"""Coalescing concurrent calls into batches: many callers ask for one item each, one function call answers all.

A server gets many small requests at once (text searches, similar-image queries). Each is cheap alone but
pays fixed costs: a transformer forward pass, one scan of the whole vector matrix. ``Coalescer`` hands every
item to one worker thread, which takes everything queued as its next batch. There is no timer: a lone item is
answered at once, and under load the batch size grows with the queue. ``submit`` returns a future, so an
asyncio server can await the answer without parking a thread per request; ``coalescer(item)`` blocks.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")
Then = TypeVar("Then")

IDLE_SECONDS = 2.0  # the worker thread exits after this long without work (and restarts on the next item)


class Coalescer(Generic[In, Out]):
    """``coalescer(item)`` returns ``fn([... item ...])[position of item]``, batching concurrent callers.

    ``fn`` takes a list of items and returns one result per item, in order. If it raises, the batch is retried
    one item at a time so that a bad item fails only its own caller. ``thread_init`` runs first in each new
    worker thread (e.g. to set its thread-local OpenMP limits).
    """

    def __init__(
        self,
        fn: Callable[[list[In]], Sequence[Out]],
        max_batch: int = 64,
        *,
        name: str = "coalescer",
        thread_init: Callable[[], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._fn = fn
        self._thread_init = thread_init
        self._max_batch = max_batch
        self._name = name
        # a C queue: a submitting thread (the server's event loop) never blocks on a lock the worker holds
        self._queue: queue.SimpleQueue[tuple[In, Future[Out]]] = queue.SimpleQueue()
        self._lifecycle = threading.Lock()  # held only to start the worker or to let it retire
        self._alive = False
        self.batches = 0  # statistics, for tests and benchmarks
        self.items = 0

    def __call__(self, item: In) -> Out:
        return self.submit(item).result()

    def submit(self, item: In) -> Future[Out]:
        """Queue ``item``; the future resolves when its batch has run."""
        future: Future[Out] = Future()
        self._queue.put((item, future))
        with self._lifecycle:
            if not self._alive:
                self._alive = True
                threading.Thread(target=self._work, name=self._name, daemon=True).start()
        return future

    def _work(self) -> None:
        if self._thread_init is not None:
            self._thread_init()
        while True:
            try:
                batch = [self._queue.get(timeout=IDLE_SECONDS)]
            except queue.Empty:
                with self._lifecycle:  # retire unless an item arrived meanwhile (the next submit starts another)
                    if self._queue.empty():
                        self._alive = False
                        return
                continue
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._run(batch)

    def _run(self, batch: list[tuple[In, Future[Out]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = list(self._fn([item for item, _ in live]))
            if len(results) != len(live):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} items")
        except Exception as error:  # isolate the failing item: each caller gets its own outcome
            if len(live) == 1:
                live[0][1].set_exception(error)
            else:
                for item, future in live:
                    self._run_one(item, future)
            return
        except BaseException as error:  # interrupted: nobody may wait forever for an answer
            for _, future in live:
                future.set_exception(error)
            raise
        for (_, future), result in zip(live, results, strict=True):
            future.set_result(result)

    def _run_one(self, item: In, future: Future[Out]) -> None:
        try:
            (result,) = list(self._fn([item]))
        except Exception as error:  # delivered to the caller that sent this item
            future.set_exception(error)
        else:
            future.set_result(result)


def then_on(
    pool: Executor,
    future: Future[Out],
    fn: Callable[[Out], Then],
    explain: Callable[[BaseException], BaseException],
) -> Future[Then]:
    """A future of ``fn(result)`` (or of ``explain(error)``), run on ``pool``: what a batch's caller does with
    its answer (a search page's catalogue reads) never runs in the worker's thread, which goes on to the next
    batch."""
    result: Future[Then] = Future()

    def finish(source: Future[Out]) -> None:
        error = source.exception()
        try:
            if error is not None:
                raise explain(error)
            result.set_result(fn(source.result()))
        except BaseException as failure:  # noqa: BLE001 - handed to whoever waits on the result
            result.set_exception(failure)

    future.add_done_callback(lambda source: run_on(pool, lambda: finish(source)))
    return result


def run_on(pool: Executor, fn: Callable[[], None]) -> None:
    """Run ``fn`` on ``pool``, or in this thread when the pool is shutting down (rather than never)."""
    try:
        pool.submit(fn)
    except RuntimeError:
        fn()


def when_all(futures: Sequence[Future[Out]], fn: Callable[[], None]) -> None:
    """Call ``fn`` once every one of ``futures`` is done (at once when there are none), in the thread that
    finishes the last of them."""
    left = [len(futures)]
    lock = threading.Lock()

    def one_done(_: Future[Out]) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            fn()

    if not futures:
        fn()
    for future in futures:
        future.add_done_callback(one_done)
