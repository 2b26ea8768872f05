"""Expensive requests (model runs on uploads, topic fits, duplicates, maps) go through small worker pools with a
bounded wait list and a deadline per job, so a burst of them cannot take every core from searches, work nobody
waits for any more is dropped, and a job that hangs (a FIFO where a photo was) cannot wedge its queue.

A Python thread cannot be killed, so a job past its deadline is abandoned: its waiters get an error at once, a
fresh worker takes its place, and its own thread ends when the call it is stuck in returns. At most
``max_overdue`` such threads may be alive per queue; past that the queue answers 503 naming why, rather than
starting threads without bound.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio
from starlette.requests import Request

from vistext.server.limits import RequestTimedOut, RequestTimeout, ServerBusy, openmp_limited

log = logging.getLogger(__name__)
T = TypeVar("T")
DISCONNECT_POLL = 0.25  # seconds between checks that the client is still there
MAX_OVERDUE = 4  # threads of abandoned jobs a queue tolerates before it refuses work


class JobOverdue(RequestTimeout):
    """A job ran past its deadline and was abandoned (a 504 to whoever waited for it)."""


class _Job:
    def __init__(self, fn: Callable[[], Any], key: Hashable | None) -> None:
        self.fn = fn
        self.key = key
        self.future: Future[Any] = Future()
        self.overdue = False
        self.returned = False


class WorkQueue:
    """``workers`` threads for one kind of expensive request and room for ``max_waiting`` more; past that a
    request gets 503 at once instead of queueing behind minutes of work. Each job has ``deadline`` seconds.

    Requests with the same ``key`` share one job. A job whose every waiter has gone (timed out or
    disconnected) before it started is cancelled; a started one finishes, and with a ``key`` its result is kept
    for the next request (``cached``, at most ``keep`` of them), even when it finished past its deadline.
    """

    def __init__(
        self,
        name: str,
        workers: int,
        max_waiting: int,
        *,
        deadline: float,
        keep: int = 0,
        max_overdue: int = MAX_OVERDUE,
    ) -> None:
        self.name = name
        self.workers = workers
        self.max_waiting = max_waiting
        self.deadline = deadline
        self.keep = keep
        self.max_overdue = max_overdue
        self._lock = threading.Lock()
        self._pending: deque[_Job] = deque()
        self._running = 0  # jobs within their deadline on a worker thread
        self._overdue: set[_Job] = set()  # abandoned jobs whose threads have not returned yet
        self._jobs: dict[Hashable, _Job] = {}
        self._waiters: dict[Future[Any], int] = {}
        self._closed = False
        self.results: OrderedDict[Hashable, Any] = OrderedDict()

    @property
    def overdue(self) -> int:
        """Threads of abandoned jobs still stuck in the call that made them miss their deadline."""
        with self._lock:
            return len(self._overdue)

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            pending, self._pending = list(self._pending), deque()
        for job in pending:
            job.future.cancel()

    def cached(self, key: Hashable) -> Any | None:
        with self._lock:
            return self.results.get(key)

    def submit(self, fn: Callable[[], T], key: Hashable | None = None) -> Future[T]:
        """Queue ``fn()`` (or join the unfinished job with the same ``key``); 503 when the queue is full."""
        with self._lock:
            if key is not None and (same := self._jobs.get(key)) is not None and not same.future.done():
                return same.future
            if len(self._overdue) >= self.max_overdue:
                raise ServerBusy(
                    f"server busy: {len(self._overdue)} {self.name} jobs are stuck past their {self.deadline:g} s "
                    "deadline; try again later"
                )
            if self._running + len(self._pending) >= self.workers + self.max_waiting:
                raise ServerBusy(
                    f"server busy: {self._running + len(self._pending)} {self.name} requests are running or "
                    "queued; try again in a few seconds"
                )
            job = _Job(openmp_limited(fn), key)
            if key is not None:
                self._jobs = {k: j for k, j in self._jobs.items() if not j.future.done()}
                self._jobs[key] = job
            self._pending.append(job)
            self._start_workers()
        return job.future

    def _start_workers(self) -> None:
        # called with the lock held: one thread per job, up to ``workers`` jobs within their deadline at once
        while self._pending and self._running < self.workers and not self._closed:
            job = self._pending.popleft()
            if not job.future.set_running_or_notify_cancel():
                continue  # every waiter left while it was queued
            self._running += 1
            threading.Thread(target=self._run, args=(job,), name=f"{self.name}-job", daemon=True).start()

    def _run(self, job: _Job) -> None:
        timer = threading.Timer(self.deadline, self._abandon, args=(job,))
        timer.daemon = True
        timer.start()
        started = time.monotonic()
        try:
            value, error = job.fn(), None
        except BaseException as failure:  # noqa: BLE001 - handed to whoever waits on the job
            value, error = None, failure
        timer.cancel()
        with self._lock:
            job.returned = True
            if job.overdue:
                self._overdue.discard(job)
                log.warning("%s job returned %.1f s after it was abandoned", self.name, time.monotonic() - started)
            else:
                self._running -= 1
            if error is None and job.key is not None and self.keep:
                self._remember(job.key, value)
            self._start_workers()
        if not job.future.done():
            if error is None:
                job.future.set_result(value)
            else:
                job.future.set_exception(error)

    def _abandon(self, job: _Job) -> None:
        """The job's deadline passed: fail it for its waiters and let a fresh worker take its place."""
        with self._lock:
            if job.returned or job.future.done():
                return
            job.overdue = True
            self._running -= 1
            self._overdue.add(job)
            self._start_workers()
        log.warning(
            "%s job missed its %g s deadline; abandoned (its thread ends when its call returns)",
            self.name,
            self.deadline,
        )
        job.future.set_exception(JobOverdue(f"the {self.name} job took longer than its {self.deadline:g} s deadline"))

    def _remember(self, key: Hashable, value: Any) -> None:
        self.results[key] = value
        self.results.move_to_end(key)
        while len(self.results) > self.keep:
            self.results.popitem(last=False)

    async def run(
        self, fn: Callable[[], T], timeout: float, request: Request | None = None, key: Hashable | None = None
    ) -> T:
        """``fn()`` on a worker thread; 503 when the queue is full, 504 past ``timeout`` seconds or the job's
        deadline."""
        job = self.submit(fn, key)
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
