"""What a damaged catalogue looks like when it is read: one line naming the file and the reason.

SQLite stores a type per value, not per column, so a flipped bit in a record header turns a vector (a BLOB) into
TEXT, or a size into a REAL, and the file still opens. Every row the catalogue hands out is checked here, at the
cost of a few ``isinstance`` calls, so a damaged value is a ``StoreError`` and never a ``TypeError`` deep in
NumPy or a wrong answer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vistext.errors import StoreError

# the image columns every read selects first, in this order, with the Python types SQLite may hand back for them
IMAGE_COLUMNS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("id", int),
    ("path", (str, bytes)),
    ("size", int),
    ("mtime", (int, float)),
    ("sha", str),
    ("model", str),
    ("status", str),
    ("error", (str, type(None))),
)


def damaged(path: Path, what: str) -> StoreError:
    return StoreError(
        f"{path}: damaged catalogue: {what}; restore a backup, or re-index into a new catalogue (--db NEW_FILE)"
    )


def check_image_row(path: Path, row: Sequence[Any], columns: int = len(IMAGE_COLUMNS)) -> None:
    """Refuse a row whose first ``columns`` image columns hold a value of the wrong type."""
    for (name, types), value in zip(IMAGE_COLUMNS[:columns], row, strict=False):
        if not isinstance(value, types) or isinstance(value, bool):
            raise damaged(path, f"image {row[0]!r} has a {type(value).__name__} {name} ({str(value)[:30]!r})")


def check_vector(path: Path, what: str, value: Any) -> None:
    """Refuse a stored vector that is not a float32 blob (None: no vector)."""
    if value is not None and (not isinstance(value, bytes) or len(value) % 4):
        size = f" of {len(value)} bytes" if isinstance(value, (bytes, str)) else ""
        raise damaged(path, f"the {what} is a {type(value).__name__}{size}, not float32s")


def sqlite_failure(path: Path, error: sqlite3.Error) -> StoreError:
    """A SQLite error as one line: a malformed file or undecodable text is a damaged catalogue."""
    text = (str(error).splitlines() or [type(error).__name__])[0]
    if "decode" in text or "malformed" in text:
        column = text.split(" with text ")[0]  # never the undecodable bytes themselves
        return damaged(path, column[:120])
    return StoreError(f"{path}: {text[:200]}")
