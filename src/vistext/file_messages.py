"""What image libraries say while a file is decoded, always attributed to that file.

Libraries speak three ways, none of which names the file: Python warnings (PIL's "Corrupt EXIF data"), PIL's
logging records ("More samples per pixel than can be decoded"), and native decoders that print straight to the
process's stderr (libtiff: "ZIPDecode: Decoding error at scanline 0"). While a file is decoded
(``decoding(path)``) all three go to the active sink (``file_messages(sink)``: indexing puts them in the
file's record and its ``--json`` report), or, with no sink, to this module's logger with the file's name.

libtiff is caught by pointing file descriptor 2 at a temporary file around the decode of a TIFF (and only a
TIFF: its magic bytes say so before any decoding). Those decodes run one at a time, so every line is
attributed to the right file; other threads' output in that window that is not a line of text (a progress
bar's redraw) is dropped rather than misattributed.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)

Sink = Callable[[str, str], None]

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
MAX_NATIVE_LINES = 20  # per file: a broken TIFF can make libtiff repeat itself hundreds of times

_current = threading.local()  # the file this thread is decoding
_sink: Sink | None = None
_native = threading.Lock()


def report(path: str, message: str) -> None:
    """Send one library message about ``path`` to the active sink, or log it with the file's name."""
    sink = _sink
    if sink is not None:
        sink(path, message)
    else:
        log.warning("%s: %s", path, message)


@contextmanager
def file_messages(sink: Sink) -> Iterator[None]:
    """While active, library messages raised during a decode go to ``sink(path, message)`` instead of stderr.
    Warnings raised outside a decode keep their usual route."""
    global _sink
    previous = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        path = getattr(_current, "path", None)
        if path is None:
            previous(message, category, filename, lineno, file, line)
        else:
            sink(path, f"{category.__name__}: {' '.join(str(message).split())}")

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # every file gets its own warnings, not only the first one
        warnings.showwarning = show
        _sink = sink
        try:
            yield
        finally:
            _sink = None


@contextmanager
def decoding(path: Path, head: bytes) -> Iterator[None]:
    """Attribute what libraries say during this block to ``path``; ``head`` is the file's first bytes."""
    _current.path = str(path)
    try:
        if head[:4] in TIFF_MAGIC:
            with _native_output(str(path)):
                yield
        else:
            yield
    finally:
        _current.path = None


@contextmanager
def _native_output(path: str) -> Iterator[None]:
    with _native, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read(1 << 16).decode("utf-8", "replace")
            lines = dict.fromkeys(s.strip() for s in text.split("\n") if s.strip() and "\r" not in s)
            for line in list(lines)[:MAX_NATIVE_LINES]:
                report(path, line)
            if len(lines) > MAX_NATIVE_LINES:
                report(path, f"... and {len(lines) - MAX_NATIVE_LINES} more messages from the decoder")


class _PillowRecords(logging.Handler):
    """PIL's log records: during a decode they are that file's messages; otherwise they go on as usual."""

    def emit(self, record: logging.LogRecord) -> None:
        path = getattr(_current, "path", None)
        if path is None:
            logging.getLogger().handle(record)
        elif record.levelno >= logging.WARNING:
            report(path, f"{record.levelname.lower()}: {' '.join(record.getMessage().split())}")


def _route_pillow_logging() -> None:
    pillow = logging.getLogger("PIL")
    if not any(isinstance(h, _PillowRecords) for h in pillow.handlers):
        pillow.addHandler(_PillowRecords())
        pillow.propagate = False


_route_pillow_logging()
