"""Request limits: body size (checked while the body streams in), image pixel count, run time."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio
from PIL import Image, UnidentifiedImageError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vistext.errors import ImageDecodeError
from vistext.service import Upload
from vistext.service.queries import one_openmp_thread

T = TypeVar("T")


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


class BodySizeLimit:
    """Rejects bodies over ``limit`` bytes with 413: up front from Content-Length, else while streaming,
    so an endless chunked upload is cut off instead of filling memory or disk."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"upload too large (limit {self.limit // (1024 * 1024)} MB)"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    await send_json(send, 400, {"error": "invalid Content-Length header"})
                    return
                if too_big:
                    await send_json(send, 413, {"error": message})
                    return
        received = 0
        exceeded = False
        replaced = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise PayloadTooLarge(message)
            return msg

        async def guarded_send(msg: Message) -> None:
            # body parsers turn any read error into their own 400; once over the limit, the answer is 413
            nonlocal replaced
            if exceeded:
                if not replaced and msg["type"] == "http.response.start":
                    replaced = True
                    await send_json(send, 413, {"error": message})
                return
            await send(msg)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except PayloadTooLarge:
            if not replaced:
                replaced = True
                await send_json(send, 413, {"error": message})


def check_upload(upload: Upload, max_pixels: int) -> None:
    """Read only the image header: refuse non-images (400) and too many pixels (413) before any decoding."""
    if not upload.data:
        raise ImageDecodeError(upload.name, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(upload.data)) as img:
                width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge(f"{upload.name}: image too large (limit {max_pixels} pixels)") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(upload.name, "not an image file") from None
    except Exception as error:  # noqa: BLE001 - any header parse failure is a bad upload, never a 500
        raise ImageDecodeError(upload.name, f"cannot open image ({type(error).__name__})") from None
    if width * height > max_pixels:
        raise PayloadTooLarge(f"{upload.name}: image too large: {width}x{height} pixels (limit {max_pixels})")


_worker = threading.local()


def _one_openmp_thread(fn: Callable[[], T]) -> Callable[[], T]:
    """Run ``fn`` with OpenMP (FAISS, BLAS) limited to one thread in this worker thread.

    A server gets its parallelism from concurrent requests; a search that also forks OpenMP threads on a
    busy 2-core machine spends most of its time spin-waiting (measured: 10k x 1280 flat search 33 ms with two
    OpenMP threads, 6 ms with one). The limit is per thread and set once per pool thread.
    """

    def limited() -> T:
        if not getattr(_worker, "limited", False):
            one_openmp_thread()
            _worker.limited = True
        return fn()

    return limited


async def run_blocking(fn: Callable[[], T], timeout: float, limiter: anyio.CapacityLimiter | None = None) -> T:
    """Run ``fn`` in a worker thread; past ``timeout`` the client gets 504 (the thread finishes on its own)."""
    try:
        with anyio.fail_after(timeout):
            return await anyio.to_thread.run_sync(_one_openmp_thread(fn), abandon_on_cancel=True, limiter=limiter)
    except TimeoutError:
        raise RequestTimeout(f"the request took longer than {timeout:g} s") from None


async def wait_for(future: Future[T], timeout: float) -> T:
    """Await a ``concurrent.futures.Future``; past ``timeout`` the client gets 504 (the work is dropped if it
    has not started)."""
    try:
        with anyio.fail_after(timeout):
            return await asyncio.wrap_future(future)
    except TimeoutError:
        future.cancel()
        raise RequestTimeout(f"the request took longer than {timeout:g} s") from None
