"""Coalescing concurrent calls into batches: many threads ask for one item each, one function call answers all.

A server gets many small requests at once (text searches, similar-image queries). Each is cheap alone but
pays fixed costs: a transformer forward pass, one scan of the whole vector matrix. ``Coalescer`` turns the
calls that arrive while one batch is running into the next batch, with no timer and no extra thread: the first
caller leads (runs the batch function on everything queued, its own item included); the others wait; when a
batch ends and callers are still queued, the oldest of them leads the next batch. A lone caller therefore
never waits for a batch to fill, and under load the batch size grows with the queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class _Slot(Generic[In, Out]):
    __slots__ = ("item", "done", "lead", "result", "error", "event")

    def __init__(self, item: In) -> None:
        self.item = item
        self.done = False
        self.lead = False
        self.result: Out | None = None
        self.error: BaseException | None = None
        self.event = threading.Event()


class Coalescer(Generic[In, Out]):
    """``coalescer(item)`` returns ``fn([... item ...])[position of item]``, batching concurrent callers.

    ``fn`` takes a list of items and returns one result per item, in order. If it raises, the batch is retried
    one item at a time so that a bad item fails only its own caller.
    """

    def __init__(self, fn: Callable[[list[In]], Sequence[Out]], max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._fn = fn
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Slot[In, Out]] = []
        self._busy = False
        self.batches = 0  # statistics, for tests and benchmarks
        self.items = 0

    def __call__(self, item: In) -> Out:
        slot: _Slot[In, Out] = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            if not self._busy:
                self._busy = True
                slot.lead = True
        while True:
            if slot.lead:
                slot.lead = False
                self._lead()
            if not slot.done:
                slot.event.wait()
                slot.event.clear()
            if slot.done:
                if slot.error is not None:
                    raise slot.error
                return slot.result  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        try:
            self._run(batch)
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.event.set()
                else:
                    self._busy = False
            for slot in batch:
                slot.done = True
                slot.event.set()

    def _run(self, batch: list[_Slot[In, Out]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = list(self._fn([slot.item for slot in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
        except Exception as error:  # isolate the failing item: each caller gets its own outcome
            if len(batch) == 1:
                batch[0].error = error
            else:
                for slot in batch:
                    self._run_one(slot)
            return
        except BaseException as error:  # interrupted: nobody may wait forever for an answer
            for slot in batch:
                slot.error = error
            raise
        for slot, result in zip(batch, results, strict=True):
            slot.result = result

    def _run_one(self, slot: _Slot[In, Out]) -> None:
        try:
            (slot.result,) = list(self._fn([slot.item]))
        except Exception as error:  # delivered to the caller that sent this item
            slot.error = error
