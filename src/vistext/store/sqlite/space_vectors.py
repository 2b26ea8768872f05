"""The vectors of the catalogue's embedding spaces: what a vector index caches and refreshes from.

A space is the pooled image features (``"image"``, table ``features``) or one embedding space (table
``embeddings``). ``SpaceVectors`` answers, over the catalogue's connection, which spaces exist and, for one
space, its count, dimension, ids and paged vector blobs, optionally only the rows changed since a generation.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vistext.store.records import IMAGE_SPACE
from vistext.store.sqlite.integrity import check_vector


def _join(space: str) -> tuple[str, list[Any]]:
    """(JOIN of ``images i`` to the rows holding ``space``'s vectors as ``v``, its parameters)."""
    if space == IMAGE_SPACE:
        return "JOIN features v ON v.sha = i.sha AND v.model = i.model AND v.pooled IS NOT NULL", []
    return "JOIN embeddings v ON v.sha = i.sha AND v.space = ?", [space]


def _column(space: str) -> str:
    return "v.pooled" if space == IMAGE_SPACE else "v.vector"


class SpaceVectors:
    """Read-only queries over the vectors of every space in one catalogue connection."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    def names(self) -> list[str]:
        """``"image"`` plus every embedding space stored."""
        # index skip-scan: one lookup per distinct space instead of reading every embedding row
        rows = self.conn.execute(
            """WITH RECURSIVE s(space) AS (
                 SELECT min(space) FROM embeddings
                 UNION ALL SELECT (SELECT min(space) FROM embeddings WHERE space > s.space) FROM s
                 WHERE s.space IS NOT NULL)
               SELECT space FROM s WHERE space IS NOT NULL"""
        )
        return [IMAGE_SPACE, *(row[0] for row in rows)]

    def count(self, space: str) -> int:
        join, args = _join(space)
        return int(self.conn.execute(f"SELECT count(*) FROM images i {join} WHERE i.status = 'ok'", args).fetchone()[0])

    def dim(self, space: str) -> int | None:
        join, args = _join(space)
        sql = f"SELECT length({_column(space)}) FROM images i {join} WHERE i.status = 'ok' LIMIT 1"
        found = self.conn.execute(sql, args).fetchone()
        return None if found is None else int(found[0]) // 4

    def ids(self, space: str) -> np.ndarray:
        join, args = _join(space)
        rows = self.conn.execute(f"SELECT i.id FROM images i {join} WHERE i.status = 'ok' ORDER BY i.id", args)
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def pages(self, space: str, since: int | None = None, page: int = 4096) -> Iterator[tuple[int, bytes | None]]:
        """(id, vector blob) of the space, ordered by id; with ``since``, only rows changed after that generation,
        and rows that left the space (failed, vector gone) come with ``None``. Call inside ``snapshot()``."""
        column = _column(space)
        join, args = _join(space)
        if since is None:
            sql = f"SELECT i.id, {column} FROM images i {join} WHERE i.status = 'ok' AND i.id > ? ORDER BY i.id LIMIT ?"
            extra: list[Any] = []
        else:
            sql = (
                f"SELECT i.id, CASE WHEN i.status = 'ok' THEN {column} END FROM images i LEFT {join} "
                "WHERE i.generation > ? AND i.id > ? ORDER BY i.id LIMIT ?"
            )
            extra = [since]
        last = -1
        while True:
            rows = self.conn.execute(sql, [*args, *extra, last, page]).fetchall()
            for image_id, blob in rows:
                check_vector(self.path, f"{space!r} vector of image {image_id}", blob)
            yield from rows
            if len(rows) < page:
                return
            last = rows[-1][0]

    def of(self, space: str, ids: list[int]) -> dict[int, bytes]:
        """id -> vector blob of those of ``ids`` (ok photos) that have one in ``space``."""
        join, args = _join(space)
        found: dict[int, bytes] = {}
        for start in range(0, len(ids), 500):  # within SQLite's limit on host parameters
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            # CROSS JOIN keeps the images (by id) as the outer loop: left to itself, SQLite walks the whole space
            # by its index and joins each row back (4.5 ms against 0.2 ms for 200 ids of 10k)
            sql = (
                f"SELECT i.id, {_column(space)} FROM images i CROSS {join} WHERE i.status = 'ok' AND i.id IN ({marks})"
            )
            for image_id, blob in self.conn.execute(sql, [*args, *chunk]):
                check_vector(self.path, f"{space!r} vector of image {image_id}", blob)
                found[int(image_id)] = blob
        return found
