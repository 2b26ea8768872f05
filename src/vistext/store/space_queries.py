"""The vectors of one embedding space in the SQLite catalogue: what a vector index caches and refreshes from.

A mixin of ``Catalogue`` (it reads ``self.conn``): count, dimension, ids and paged vector blobs of a space, the
pooled image features (``"image"``) or an embedding space, with the rows changed since a generation.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import numpy as np

from vistext.store.records import IMAGE_SPACE


class SpaceQueries:
    conn: sqlite3.Connection

    # ---- vectors of a space --------------------------------------------------
    @staticmethod
    def _space_sql(space: str) -> tuple[str, list[Any]]:
        if space == IMAGE_SPACE:
            return "JOIN features v ON v.sha = i.sha AND v.model = i.model AND v.pooled IS NOT NULL", []
        return "JOIN embeddings v ON v.sha = i.sha AND v.space = ?", [space]

    def space_count(self, space: str) -> int:
        join, args = self._space_sql(space)
        return int(self.conn.execute(f"SELECT count(*) FROM images i {join} WHERE i.status = 'ok'", args).fetchone()[0])

    def space_dim(self, space: str) -> int | None:
        join, args = self._space_sql(space)
        column = "v.pooled" if space == IMAGE_SPACE else "v.vector"
        row = self.conn.execute(f"SELECT length({column}) FROM images i {join} WHERE i.status = 'ok' LIMIT 1", args)
        found = row.fetchone()
        return None if found is None else int(found[0]) // 4

    def space_ids(self, space: str) -> np.ndarray:
        join, args = self._space_sql(space)
        rows = self.conn.execute(f"SELECT i.id FROM images i {join} WHERE i.status = 'ok' ORDER BY i.id", args)
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def space_vectors(
        self, space: str, since: int | None = None, page: int = 4096
    ) -> Iterator[tuple[int, bytes | None]]:
        """(id, vector blob) of the space, ordered by id; with ``since``, only rows changed after that generation,
        and rows that left the space (failed, vector gone) come with ``None``. Call inside ``snapshot()``."""
        column = "v.pooled" if space == IMAGE_SPACE else "v.vector"
        join, args = self._space_sql(space)
        if since is None:
            sql = f"SELECT i.id, {column} FROM images i {join} WHERE i.status = 'ok' AND i.id > ? ORDER BY i.id LIMIT ?"
            extra: list[Any] = []
        else:
            join = "LEFT " + join
            sql = (
                f"SELECT i.id, CASE WHEN i.status = 'ok' THEN {column} END FROM images i {join} "
                "WHERE i.generation > ? AND i.id > ? ORDER BY i.id LIMIT ?"
            )
            extra = [since]
        last = -1
        while True:
            rows = self.conn.execute(sql, [*args, *extra, last, page]).fetchall()
            yield from rows
            if len(rows) < page:
                return
            last = rows[-1][0]
