"""Expensive requests (model runs on uploads, topic fits) go through small worker pools with a bounded wait
list, so a burst of them cannot take every core from searches, and work nobody waits for any more is dropped.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
from starlette.requests import Request

from vistext.server.limits import RequestTimedOut, RequestTimeout, ServerBusy, openmp_limited

T = TypeVar("T")
DISCONNECT_POLL = 0.25  # seconds between checks that the client is still there


class WorkQueue:
    """``workers`` threads for one kind of expensive request and room for ``max_waiting`` more; past that a
    request gets 503 at once instead of queueing behind minutes of work.

    Requests with the same ``key`` share one job. A job whose every waiter has gone (timed out or
    disconnected) before it started is cancelled; a started one finishes (a thread cannot be stopped), and
    with a ``key`` its result is kept for the next request (``results``), so the work is not lost.
    """

    def __init__(self, name: str, workers: int, max_waiting: int, keep: int = 0) -> None:
        self.name = name
        self.workers = workers
        self.max_waiting = max_waiting
        self.keep = keep
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._unfinished = 0
        self._jobs: dict[Hashable, Future[Any]] = {}
        self._waiters: dict[Future[Any], int] = {}
        self.results: OrderedDict[Hashable, Any] = OrderedDict()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, fn: Callable[[], T], key: Hashable | None) -> Future[T]:
        if key is not None and (job := self._jobs.get(key)) is not None and not job.done():
            return job
        with self._lock:
            if self._unfinished >= self.workers + self.max_waiting:
                raise ServerBusy(
                    f"server busy: {self._unfinished} {self.name} requests are running or queued; "
                    "try again in a few seconds"
                )
            self._unfinished += 1
        job = self._pool.submit(openmp_limited(fn))
        job.add_done_callback(self._finished)
        if key is not None:
            self._jobs = {k: j for k, j in self._jobs.items() if not j.done()}
            self._jobs[key] = job
            if self.keep:
                job.add_done_callback(lambda done: self._remember(key, done))
        return job

    def _finished(self, job: Future[Any]) -> None:
        with self._lock:
            self._unfinished -= 1

    def _remember(self, key: Hashable, job: Future[Any]) -> None:
        if job.cancelled() or job.exception() is not None:
            return
        with self._lock:
            self.results[key] = job.result()
            self.results.move_to_end(key)
            while len(self.results) > self.keep:
                self.results.popitem(last=False)

    def cached(self, key: Hashable) -> Any | None:
        with self._lock:
            return self.results.get(key)

    async def run(
        self, fn: Callable[[], T], timeout: float, request: Request | None = None, key: Hashable | None = None
    ) -> T:
        """``fn()`` on a worker thread; 503 when the queue is full, 504 past ``timeout`` seconds."""
        job = self._submit(fn, key)
        self._waiters[job] = self._waiters.get(job, 0) + 1
        waiting = asyncio.wrap_future(job)
        try:
            with anyio.fail_after(timeout):
                while True:
                    done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL)
                    if done:
                        return waiting.result()
                    if request is not None and await request.is_disconnected():
                        raise RequestTimedOut("the client went away before the answer was ready")
        except TimeoutError:
            raise RequestTimeout(f"the request took longer than {timeout:g} s") from None
        finally:
            left = self._waiters.pop(job) - 1
            if left:
                self._waiters[job] = left
            else:
                job.cancel()  # only takes effect while it is still queued
                if not waiting.done():
                    waiting.cancel()
