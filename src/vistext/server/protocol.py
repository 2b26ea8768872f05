"""The connection layer: uvicorn's HTTP protocol with the time and size limits a shared server needs.

uvicorn closes idle keep-alive connections, but it holds a connection that never completes its request head
(sends nothing, or one header byte every few seconds) forever, and it answers a malformed request in plain
text. The protocol here gives every request head a deadline (``header_timeout``) and a size limit
(``max_head_bytes``), and answers both, and malformed requests, with ``{"error": ...}``. Limits on requests
in flight, on bodies and on slow readers live in the ASGI middleware (``limits``), where the app sees them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    HTTPTOOLS = True
except ImportError:  # httptools comes with the serve extra; without it uvicorn parses with h11
    HttpToolsProtocol = H11Protocol  # type: ignore[misc, assignment]
    HTTPTOOLS = False

from vistext.server.settings import ServerSettings

log = logging.getLogger(__name__)
LINGER = 2.0  # seconds to keep reading (and dropping) a refused request's input before closing


class _HeadTooLarge(Exception):
    """Raised inside the parser's callbacks to stop reading a head over ``max_head_bytes``."""


def error_response(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response carrying ``{"error": message}`` that closes the connection."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _HeadLimits:
    """Mixed into a uvicorn protocol class: a deadline and a size limit for every request head.

    The deadline starts when the connection opens and again when a response is complete. When it passes, a
    connection with part of a head gets 408 and is closed, a new one that sent nothing is closed silently,
    and one still streaming the body of a request already answered keeps going while bytes arrive.
    """

    header_timeout: float = 10.0
    max_head_bytes: int = 64 * 1024
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any

    def _init_limits(self) -> None:
        self._head_timer: asyncio.TimerHandle | None = None
        self._received = 0  # bytes received on this connection
        self._received_at_arm = 0
        self._head_bytes = 0
        self._discarding = False  # answered with an error: the rest of the input is dropped

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._received_at_arm = self._received
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_deadline_passed)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline_passed(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # a request is being answered; the next response re-arms the deadline
        state = self._head_state()
        if state == "head":
            log.info("closing a connection whose request head took over %g s", self.header_timeout)
            self._reject(408, f"request head not received within {self.header_timeout:g} s")
        elif state == "body" and self._received > self._received_at_arm:
            self._arm_head_deadline()  # the rest of an answered request's body, still arriving
        elif state == "body" or self.cycle is None:
            self.transport.close()  # a body that stalled, or a connection that never sent a byte
        # else idle after an answer: uvicorn's keep-alive timeout closes it

    # each protocol class says where its parser is: 'idle', 'head' (part of a request head received) or 'body'
    # (a request's body still arriving)
    _head_state: Callable[[], str]

    # the connection's life, around the uvicorn protocol's own handlers (next in the method resolution order)
    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        if not self._discarding:
            super().data_received(data)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def _reject(self, status: int, message: str) -> None:
        """Answer ``status`` and close. Whatever the client still sends meanwhile is read and dropped for a
        moment first: closing with unread bytes makes the kernel reset the connection, and the client would
        see the reset instead of the answer."""
        self._disarm_head_deadline()
        if self.transport.is_closing() or self._discarding:
            return
        self._discarding = True
        self.transport.write(error_response(status, message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER, self.transport.close)

    def send_400_response(self, msg: str) -> None:  # uvicorn's hook for requests its parser refuses
        self._reject(400, "malformed HTTP request (the request line, a header or the body framing is invalid)")


class HttpToolsLimits(_HeadLimits, HttpToolsProtocol):  # type: ignore[misc]
    """uvicorn's httptools protocol with head limits (the parser used when httptools is installed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_limits()
        self._in_head = False
        self._in_message = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._in_message = True
        self._head_bytes = 0

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            # the parser stops at a callback's exception and reports a parse error: send_400_response says 431
            raise _HeadTooLarge

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._head_bytes > self.max_head_bytes:
            self._reject(431, f"request line and headers too large (limit {self.max_head_bytes // 1024} KB)")
        else:
            super().send_400_response(msg)

    def on_message_complete(self) -> None:
        self._in_message = False
        super().on_message_complete()

    def _head_state(self) -> str:
        if self._in_head:
            return "head"
        return "body" if self._in_message else "idle"


class H11Limits(_HeadLimits, H11Protocol):  # type: ignore[misc]
    """uvicorn's pure-Python h11 protocol with head limits (h11 itself caps the head size)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_limits()

    def _head_state(self) -> str:
        import h11

        their = self.conn.their_state
        if their is h11.IDLE:
            return "head" if self._received > self._received_at_arm else "idle"
        return "body" if their is h11.SEND_BODY else "idle"


def protocol_class(settings: ServerSettings) -> type[asyncio.Protocol]:
    """The HTTP protocol for ``settings``: httptools when installed (the ``serve`` extra), else h11."""
    base: type[_HeadLimits] = HttpToolsLimits if HTTPTOOLS else H11Limits
    limits = {"header_timeout": settings.header_timeout, "max_head_bytes": settings.max_head_bytes}
    return type(base.__name__, (base,), limits)  # type: ignore[return-value]


def uvicorn_config(app: Any, settings: ServerSettings, **options: Any) -> uvicorn.Config:
    """How ``vistext serve`` runs ``app``: no connection limit (requests in flight are limited instead, by
    ``limits.InFlightLimit``), head limits per connection, a short keep-alive."""
    config: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "http": protocol_class(settings),
        "limit_concurrency": None,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "h11_max_incomplete_event_size": settings.max_head_bytes,
        "server_header": False,
        "backlog": 2048,
    }
    config.update(options)
    return uvicorn.Config(app, **config)
