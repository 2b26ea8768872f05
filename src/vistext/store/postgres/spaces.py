"""The vector spaces of a PostgreSQL catalogue as one store sees them: dimensions, sizes and HNSW indexes.

A space's dimension is fixed by its first vector (table ``spaces``); its HNSW index is built in bulk once it
outgrows exact search (``hnsw_threshold`` vectors). Sizes and index states are asked of the server and trusted
for a few seconds, so a search costs one round trip, not one per question; every write forgets them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np
import psycopg
from psycopg import sql

from vistext.errors import StoreError
from vistext.store.postgres.database import Database
from vistext.store.postgres.reads import space_join
from vistext.store.postgres.schema import EF_CONSTRUCTION, HNSW_M, build_index, create_space, drop_index
from vistext.store.postgres.search import space_dim
from vistext.store.records import IMAGE_SPACE, ImageRecord

_SIZE_TTL = 5.0  # seconds a space's size (the exact/HNSW choice) is trusted


def record_spaces(record: ImageRecord) -> list[str]:
    """The spaces ``record`` holds a vector of."""
    return ([IMAGE_SPACE] if record.pooled is not None else []) + list(record.embeddings)


class Spaces:
    """Dimensions, sizes and HNSW index state of every space, cached for one store (thread-safe enough: every
    cached value is a hint re-read from the server when stale)."""

    def __init__(self, database: Database, hnsw_threshold: int) -> None:
        self.database = database
        self.hnsw_threshold = hnsw_threshold
        self._sizes: dict[str, tuple[float, int]] = {}
        self._states: dict[str, tuple[float, int | None, bool, int]] = {}
        self._dims: dict[str, int] = {}
        self._indexed: set[str] = set()  # spaces whose HNSW index exists
        self._unindexed: dict[str, int] = {}  # the others: at most this many vectors

    def changed(self) -> None:
        """Forget sizes and states: the catalogue was just written."""
        self._sizes.clear()
        self._states.clear()

    def create(self, conn: psycopg.Connection, records: Iterable[ImageRecord]) -> None:
        """Record the dimension of each space these records bring (whoever comes first); refuse another."""
        where = self.database.where
        for record in records:
            for space in record_spaces(record):
                vector = record.pooled if space == IMAGE_SPACE else record.embeddings[space]
                dim = int(np.asarray(vector).size)
                known = self._dims.get(space)
                if known is None:
                    create_space(conn, space, dim, where)
                    self._dims[space] = dim
                elif known != dim:
                    raise StoreError(f"{where}: space {space!r} holds {known}-d vectors, not {dim}-d ({record.path})")

    def grown(self, records: Sequence[ImageRecord]) -> None:
        """Build the HNSW index of each space that just outgrew exact search (counted only when it may have)."""
        added: dict[str, int] = {}
        for record in records:
            for space in record_spaces(record):
                added[space] = added.get(space, 0) + 1
        for space, count in sorted(added.items()):
            if space in self._indexed:
                continue
            known = self._unindexed.get(space)
            if known is not None and known + count <= self.hnsw_threshold:
                self._unindexed[space] = known + count  # an upper bound (replacements count as new rows)
                continue
            with self.database.transaction() as conn:
                size = self.size(conn, space, fresh=True)
                if size > self.hnsw_threshold:
                    build_index(conn, space, self.database.where)
                    self._indexed.add(space)
                    self._states.clear()
                else:
                    self._unindexed[space] = size

    def build(self, space: str, *, m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION) -> None:
        """(Re)build ``space``'s HNSW index now, whatever its size."""
        with self.database.transaction() as conn:
            drop_index(conn, space)
            build_index(conn, space, self.database.where, m=m, ef_construction=ef_construction)
        self._indexed.add(space)
        self._states.clear()

    def size(self, conn: psycopg.Connection, space: str, fresh: bool = False) -> int:
        """How many ok images have a vector in ``space`` (``fresh``: ask the server now)."""
        cached = self._sizes.get(space)
        if cached is not None and not fresh and time.monotonic() - cached[0] < _SIZE_TTL:
            return cached[1]
        join, args = space_join(space)
        row = conn.execute(sql.SQL("SELECT count(*) FROM images i {} WHERE i.status = 'ok'").format(join), args)
        size = int((row.fetchone() or (0,))[0])
        self._sizes[space] = (time.monotonic(), size)
        return size

    def state(self, conn: psycopg.Connection, space: str) -> tuple[int | None, bool, int]:
        """(dimension, HNSW index built, vectors) of a space, trusted for a few seconds."""
        cached = self._states.get(space)
        if cached is not None and time.monotonic() - cached[0] < _SIZE_TTL:
            return cached[1:]
        dim, indexed = space_dim(conn, space)
        size = self.size(conn, space, fresh=True) if dim else 0
        self._states[space] = (time.monotonic(), dim, indexed, size)
        return dim, indexed, size
