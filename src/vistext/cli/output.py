"""How the CLI prints: exactly one JSON document with ``--json``, readable lines otherwise.

Every readable line goes through ``say`` (stdout) or ``warn`` (stderr), which make it safe for a terminal:
a file name, caption, tag or camera name is someone else's text, and an ESC in it could clear the screen or
retitle the window, a CR or LF could forge a line. Such characters are shown as visible escapes (``\\x1b``);
``--json`` output is left exact (JSON escapes what it must).
"""

from __future__ import annotations

import sys
import unicodedata
from typing import Any, TextIO

from vistext.service.results import json_text

# bidirectional embeddings, overrides and isolates (U+202A-202E, U+2066-2069), marks (U+200E, U+200F, U+061C),
# and the line and paragraph separators (U+2028, U+2029): they reorder or break what a terminal shows
_INVISIBLE = frozenset("\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _shown(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a file name that is not UTF-8 (surrogateescape)
        byte = code - 0xDC00
        return f"\\x{byte:02x}" if byte < 0xA0 else char  # 0x80-0x9f are C1 controls in an 8-bit terminal
    if 0xD800 <= code <= 0xDFFF:  # any other lone surrogate: no encoding can write it
        return f"\\u{code:04x}"
    if char in _INVISIBLE or unicodedata.category(char) == "Cc":
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return char


def terminal_safe(text: str) -> str:
    """``text`` with control characters (C0, DEL, C1), bidi controls and line separators shown as escapes."""
    if text.isprintable():  # the common case, and fast: printable text holds none of them
        return text
    return "".join(_shown(char) for char in text)


def _write(stream: TextIO, text: str) -> None:
    """``text`` on ``stream``; what its encoding cannot carry (a Latin-1 terminal given a Chinese file name) is
    written as backslash escapes, which inside JSON text are the same characters."""
    try:
        stream.write(text)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
    stream.flush()


def say(line: str = "") -> None:
    """One line on stdout, made safe for a terminal (a line break inside it is shown, not obeyed)."""
    _write(sys.stdout, terminal_safe(line) + "\n")


def say_failures(failures: list[tuple[str, str]], shown: int = 20) -> None:
    """The files that failed, one ``failed: PATH: REASON`` line each (the first ``shown``; --json has all)."""
    for path, reason in failures[:shown]:
        say(f"  failed: {path}: {reason}")
    if len(failures) > shown:
        say(f"  ... and {len(failures) - shown} more failures (see --json)")


def warn(line: str) -> None:
    """One line on stderr, made safe for a terminal."""
    _write(sys.stderr, terminal_safe(line) + "\n")


def percent(score: float) -> str:
    return f"{score:6.3f}"


def emit_json(document: Any) -> None:
    _write(sys.stdout, json_text(document) + "\n")


class JsonList:
    """One JSON array written to stdout item by item, so a long answer streams (still one document, one line).

    The ``[`` is written with the first item, so an error raised before any item (a missing model) is still
    printed as the only document. A list that an error interrupts is closed with that error as its last item
    (``emit_error``), so what was printed stays one valid document."""

    current: JsonList | None = None  # the list being written, if one has begun

    def __init__(self) -> None:
        self.count = 0

    def add(self, item: Any) -> None:
        _write(sys.stdout, ("," if self.count else "[") + json_text(item))
        self.count += 1
        JsonList.current = self

    def close(self) -> None:
        _write(sys.stdout, ("]" if self.count else "[]") + "\n")
        JsonList.current = None


def emit_error(message: str) -> None:
    """``{"error": message}`` as the JSON answer: the last item of a list already begun, else the document."""
    begun, JsonList.current = JsonList.current, None
    if begun is not None:
        begun.add({"error": message})
        begun.close()
    else:
        emit_json({"error": message})
