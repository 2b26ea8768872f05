"""Request limits: requests in flight, body size and arrival time, slow readers, image pixel count, run time."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vistext.service.queries import one_math_thread

T = TypeVar("T")
log = logging.getLogger(__name__)


class PayloadTooLarge(Exception):
    """Answered with 413 and this message."""


class RequestTimeout(Exception):
    """Answered with 504: the work took longer than the server allows."""


async def send_json(send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            + list(headers),
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestTimedOut(Exception):
    """Answered with 408: the client was too slow sending its request."""


class ServerBusy(Exception):
    """Answered with 503 and ``Retry-After``: too much work is queued already."""


class BodyLimits:
    """Limits on the request body and on the client's reading of the answer.

    A body over ``limit`` bytes gets 413: up front from Content-Length, else while streaming, so an endless
    chunked upload is cut off instead of filling memory or disk. A body that has not fully arrived
    ``timeout`` seconds after the app starts reading it gets 408, and a client that does not take a part of
    the answer within ``timeout`` seconds is dropped, so slow clients cannot hold a request slot for ever.
    """

    def __init__(self, app: ASGIApp, limit: int, timeout: float = 30.0) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"upload too large (limit {self.limit // (1024 * 1024)} MB)"
        refused = self._declared_size(scope, too_large)
        if refused is not None:
            await send_json(send, *refused)
            return
        received = 0
        body_done = False
        deadline: float | None = None
        failure: tuple[int, str] | None = None
        replaced = False

        async def limited_receive() -> Message:
            nonlocal received, body_done, deadline, failure
            if body_done:
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):
                    msg = await receive()
            except TimeoutError:
                failure = (408, f"the request body did not arrive within {self.timeout:g} s")
                raise RequestTimedOut(failure[1]) from None
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    failure = (413, too_large)
                    raise PayloadTooLarge(too_large)
                body_done = not msg.get("more_body", False)
            else:
                body_done = True
            return msg

        async def guarded_send(msg: Message) -> None:
            # body parsers turn any read error into their own 400; after a limit, the answer is the limit's
            nonlocal replaced
            if failure is not None:
                if not replaced and msg["type"] == "http.response.start":
                    replaced = True
                    await send_json(send, *_failure_body(failure))
                return
            try:  # asyncio's timeout, not anyio's cancel scope: this runs twice per answer, in the event loop
                async with asyncio.timeout(self.timeout):
                    await send(msg)
            except TimeoutError:
                raise _SlowReader from None

        try:
            await self.app(scope, limited_receive, guarded_send)
        except (PayloadTooLarge, RequestTimedOut):
            if not replaced and failure is not None:
                replaced = True
                await send_json(send, *_failure_body(failure))
        except _SlowReader:
            # the answer cannot be finished: uvicorn closes the connection when the app returns early
            log.info("dropped a client that did not read its answer within %g s", self.timeout)

    def _declared_size(self, scope: Scope, too_large: str) -> tuple[int, dict[str, Any]] | None:
        """400 for a Content-Length that is not a size, 413 for one over the limit: answered up front."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = -1
                if size < 0:
                    return 400, {"error": "invalid Content-Length header"}
                if size > self.limit:
                    return 413, {"error": too_large}
        return None


class _SlowReader(Exception):
    pass


def _failure_body(failure: tuple[int, str]) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    status, message = failure
    # a body left half-sent cannot be skipped to reach the next request: close after answering
    return status, {"error": message}, [(b"connection", b"close")] if status == 408 else []


class InFlightLimit:
    """At most ``limit`` requests are handled at once; up to ``max_queued`` more wait (each at most
    ``wait_timeout`` seconds) and any beyond get 503 at once. Open connections cost nothing here: an idle
    connection holds no slot, so thousands of them cannot starve anyone."""

    def __init__(self, app: ASGIApp, limit: int, max_queued: int, wait_timeout: float) -> None:
        self.app = app
        self.limit = limit
        self.max_queued = max_queued
        self.wait_timeout = wait_timeout
        self.queued = 0
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        if self._slots.locked():
            if self.queued >= self.max_queued:
                await send_json(send, *_busy(f"{self.queued} requests are queued already"))
                return
            self.queued += 1
            try:
                async with asyncio.timeout(self.wait_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                await send_json(send, *_busy(f"no request slot became free within {self.wait_timeout:g} s"))
                return
            finally:
                self.queued -= 1
        else:
            await self._slots.acquire()
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()


def _busy(why: str) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    return 503, {"error": f"server busy: {why}; try again in a few seconds"}, [(b"retry-after", b"2")]


_worker = threading.local()


def openmp_limited(fn: Callable[[], T]) -> Callable[[], T]:
    """Run ``fn`` with OpenMP (FAISS, BLAS) limited to one thread in this worker thread (and BLAS in the
    process: ``one_math_thread``).

    A server gets its parallelism from concurrent requests; a search that also forks OpenMP threads on a
    busy 2-core machine spends most of its time spin-waiting (measured: 10k x 1280 flat search 33 ms with two
    OpenMP threads, 6 ms with one). The limit is per thread and set once per pool thread.
    """

    def limited() -> T:
        if not getattr(_worker, "limited", False):
            one_math_thread()
            _worker.limited = True
        return fn()

    return limited


async def run_blocking(fn: Callable[[], T], timeout: float, limiter: anyio.CapacityLimiter | None = None) -> T:
    """Run ``fn`` in a worker thread; past ``timeout`` the client gets 504 (the thread finishes on its own)."""
    try:
        with anyio.fail_after(timeout):
            return await anyio.to_thread.run_sync(openmp_limited(fn), abandon_on_cancel=True, limiter=limiter)
    except TimeoutError:
        raise RequestTimeout(f"the request took longer than {timeout:g} s") from None


async def wait_for(future: Future[T], timeout: float) -> T:
    """Await a ``concurrent.futures.Future``; past ``timeout`` the client gets 504 (the work is dropped if it
    has not started)."""
    try:
        async with asyncio.timeout(timeout):  # lighter than anyio's cancel scope, on the hot path of every search
            return await asyncio.wrap_future(future)
    except TimeoutError:
        future.cancel()
        raise RequestTimeout(f"the request took longer than {timeout:g} s") from None
