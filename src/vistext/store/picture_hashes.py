"""The perceptual-hash cache, one table in both backends: content hash -> the photo's DCT and difference hashes
(``analysis.picture_hash``), so a second ``vistext duplicates`` decodes no photo. Keyed by content, like the
features: every copy of the same bytes shares one row, and a changed file gets a new content hash, so a row is
never stale. ``mark`` is the backend's query-parameter marker (``?`` for SQLite, ``%s`` for PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# the schema line both backends' migrations run (SQLite's INTEGER affinity stores a BIGINT as 64 bits)
CREATE_TABLE = "CREATE TABLE picture_hashes (sha TEXT PRIMARY KEY, dct BIGINT NOT NULL, diff BIGINT NOT NULL)"
_CHUNK = 500  # shas per query (SQLite's parameter limit is 999 on old builds)


def read_hashes(conn: Any, shas: Iterable[str], mark: str) -> dict[str, tuple[int, int]]:
    """Content hash -> (dct, diff) for those of ``shas`` the cache holds."""
    wanted = sorted(set(shas))
    found: dict[str, tuple[int, int]] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        query = f"SELECT sha, dct, diff FROM picture_hashes WHERE sha IN ({', '.join([mark] * len(chunk))})"
        for sha, dct, diff in conn.execute(query, chunk).fetchall():
            found[str(sha)] = (int(dct), int(diff))
    return found


def write_hashes(conn: Any, hashes: Mapping[str, tuple[int, int]], mark: str) -> None:
    """Add ``hashes`` (content hash -> (dct, diff)); a content hash already there keeps its row."""
    rows = [(sha, int(dct), int(diff)) for sha, (dct, diff) in hashes.items()]
    if rows:
        conn.cursor().executemany(
            f"INSERT INTO picture_hashes (sha, dct, diff) VALUES ({mark}, {mark}, {mark}) ON CONFLICT (sha) DO NOTHING",
            rows,
        )
