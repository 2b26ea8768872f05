"""Opening the catalogue's SQLite file for writing, or for reading only without writing a byte.

A writable catalogue runs in WAL mode (readers never wait for the writer). A read-only one (a mounted share,
a DVD, another user's collection) is opened with ``mode=ro``, and with ``immutable=1`` where the folder cannot
hold SQLite's shared-memory file either.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from vistext.errors import StoreError

_READER_CACHE_KIB = -1024  # page cache of each of ``connect_reader``'s connections (KiB)


def writable(path: Path) -> bool:
    """Whether ``path`` and its folder (or, if it is missing, its nearest existing folder) can be written.

    ``os.access`` reports a read-only file system (EROFS) even to root, which ignores permission bits.
    """
    for candidate in (path, *path.parents):
        if candidate.exists():
            return os.access(candidate, os.W_OK) and (candidate is not path or os.access(path.parent, os.W_OK))
    return False


def _where_to_write(path: Path, reason: str) -> StoreError:
    return StoreError(
        f"{path}: cannot write the catalogue here ({reason}); pass --db PATH to keep it somewhere writable"
    )


def connect_writable(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection that may write (WAL journal, busy timeout); a read-only place says where to write instead."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _where_to_write(path, error.strerror or str(error)) from None
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: a kill never corrupts, only fsyncs less
    except sqlite3.Error as error:
        conn.close()
        if not writable(path):
            raise _where_to_write(path, "read-only") from None
        raise StoreError(f"{path}: cannot open catalogue: {error}") from None
    return conn


def connect_reader(path: Path, timeout: float) -> sqlite3.Connection:
    """One of the per-thread reading connections of a catalogue another connection of this process may write:
    read-only, with a small page cache of its own (the OS caches the file for all of them)."""
    conn = connect_readonly(path, timeout)
    try:
        conn.execute(f"PRAGMA cache_size = {_READER_CACHE_KIB}")
    except sqlite3.Error as error:
        conn.close()
        raise StoreError(f"{path}: cannot open catalogue: {error}") from None
    return conn


def connect_readonly(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection that never writes: no journal mode change, no lock or shared-memory file in a read-only folder."""
    if not path.is_file():
        raise StoreError(f"{path}: no catalogue here; run `vistext index DIR` first (or pass --db)")
    flags = "mode=ro" + ("" if writable(path.parent) else "&immutable=1")
    uri = f"file:{quote(str(path.resolve()))}?{flags}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    except sqlite3.Error as error:
        raise StoreError(f"{path}: cannot open catalogue: {error}") from None
    return conn
