"""The vector spaces of a PostgreSQL catalogue as one store sees them: dimensions, sizes and ANN indexes.

A space's dimension is fixed by its first vector (table ``spaces``); a searched space's HNSW index
(``indexes``) is built in bulk once the space outgrows exact search (``hnsw_threshold`` vectors). A large load
(``bulk_load``) drops the indexes it would otherwise grow a row at a time and builds them when it ends; one that
is interrupted leaves them to the next load, which builds whatever is missing (``ensure``), and until then the
space is searched exactly and ``describe`` calls its index "pending". Sizes and index states are asked of the
server and trusted for a few seconds, so a search costs one round trip, not one per question; every write
forgets them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from vistext.errors import StoreError
from vistext.store.postgres.database import Database
from vistext.store.postgres.indexes import EF_CONSTRUCTION, HNSW_M, MAX_BUILD_MEMORY, build_index, drop_index
from vistext.store.postgres.leads import Leads
from vistext.store.postgres.reads import SPACES, space_join
from vistext.store.postgres.schema import create_space
from vistext.store.postgres.search import space_dim
from vistext.store.records import IMAGE_SPACE, ImageRecord

log = logging.getLogger(__name__)

_SIZE_TTL = 5.0  # seconds a space's size (the exact/HNSW choice) is trusted
# a load of at least this share of a space's vectors builds its index afresh afterwards: pgvector builds a graph
# over existing rows 10-20x faster per row than it inserts into one (bench/pgvector.py scale)
DEFER_SHARE = 0.25


def record_spaces(record: ImageRecord) -> list[str]:
    """The spaces ``record`` holds a vector of."""
    return ([IMAGE_SPACE] if record.pooled is not None else []) + list(record.embeddings)


class Spaces:
    """Dimensions, sizes and HNSW index state of every space, cached for one store (thread-safe enough: every
    cached value is a hint re-read from the server when stale)."""

    def __init__(self, database: Database, hnsw_threshold: int, build_memory: int = MAX_BUILD_MEMORY) -> None:
        self.database = database
        self.hnsw_threshold = hnsw_threshold
        self.build_memory = build_memory  # the most one index build asks for (maintenance_work_mem)
        self._loads = 0  # bulk loads under way: no index is built until they end
        self._unsearched: set[str] = set()
        self._warned: set[str] = set()
        self._sizes: dict[str, tuple[float, int]] = {}
        self._states: dict[str, tuple[float, int | None, bool, int]] = {}
        self._dims: dict[str, int] = {}
        self._indexed: set[str] = set()  # spaces whose HNSW index exists
        self.leads = Leads()  # each space's leading directions, once decided
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
                    create_space(conn, space, dim, where, searched=space not in self._unsearched)
                    self._dims[space] = dim
                elif known != dim:
                    raise StoreError(f"{where}: space {space!r} holds {known}-d vectors, not {dim}-d ({record.path})")

    def bases(self, conn: psycopg.Connection, records: Iterable[ImageRecord]) -> dict[str, np.ndarray | None]:
        """The basis each space of ``records`` makes its leads with (None: none yet, or the whole vector is
        indexed), for a write inside ``conn``'s transaction (see ``Leads.read``)."""
        spaces = {space for record in records for space in record_spaces(record)}
        self.leads.read(conn, sorted(spaces), lock=True)
        return {space: self.leads.basis(space) for space in spaces}

    def basis(self, conn: psycopg.Connection, space: str) -> np.ndarray | None:
        """The basis of the leads ``space``'s index holds; None where it holds the vectors themselves."""
        self.leads.read(conn, [space], lock=False)
        return self.leads.basis(space)

    def grown(self, records: Sequence[ImageRecord]) -> None:
        """Decide the leading directions of, and build the HNSW index of, each space that just outgrew exact
        search (counted only when it may have); during a bulk load only the first, the index when it ends."""
        added: dict[str, int] = {}
        for record in records:
            for space in record_spaces(record):
                added[space] = added.get(space, 0) + 1
        for space, count in sorted(added.items()):
            if space in self._indexed or (self._loads and self.leads.decided(space)):
                continue
            known = self._unindexed.get(space)
            if known is not None and known + count <= self.hnsw_threshold:
                self._unindexed[space] = known + count  # an upper bound (replacements count as new rows)
                continue
            with self.database.transaction() as conn:
                size = self.size(conn, space, fresh=True)
                if size <= self.hnsw_threshold:
                    self._unindexed[space] = size
                    continue
                self.leads.decide(conn, space)  # before the rows that follow, so they carry their leads
                if not self._loads:  # a bulk load builds its indexes when it ends
                    build_index(conn, space, self.database.where, memory_limit=self.build_memory)
                    self._indexed.add(space)
                    self._states.clear()

    def build(self, space: str, *, m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION) -> None:
        """(Re)build ``space``'s HNSW index now, whatever its size."""
        with self.database.transaction() as conn:
            drop_index(conn, space)
            self.leads.decide(conn, space)
            build_index(
                conn, space, self.database.where, m=m, ef_construction=ef_construction, memory_limit=self.build_memory
            )
        self._indexed.add(space)
        self._states.clear()

    def mark_unsearched(self, spaces: Iterable[str]) -> None:
        """These spaces are read whole, never searched by nearest neighbour: they get no index (and lose one)."""
        spaces = set(spaces) - {IMAGE_SPACE}
        self._unsearched |= spaces
        with self.database.transaction() as conn:
            for space in sorted(spaces):
                unsearch = "UPDATE spaces SET searched = false, lead_dims = coalesce(lead_dims, 0) WHERE space = %s"
                if conn.execute(unsearch + " AND searched", (space,)).rowcount:
                    drop_index(conn, space)
        self._indexed -= spaces
        self._states.clear()

    @contextmanager
    def bulk_load(self, rows: int) -> Iterator[None]:
        """Around writing about ``rows`` records: the indexes of spaces this load grows by ``DEFER_SHARE`` or more
        are dropped first, and every missing index is built when the load ends; an exception leaves them to the
        next load (searches are exact meanwhile)."""
        if rows >= self.hnsw_threshold:
            with self.database.transaction() as conn:
                for space, indexed, _ in self.catalogue_spaces(conn):
                    if indexed and rows >= DEFER_SHARE * self.size(conn, space, fresh=True):
                        log.info("%s: index of %s dropped for a load of %d photos", self.database.where, space, rows)
                        drop_index(conn, space)
                        self._indexed.discard(space)
            self._states.clear()
        self._loads += 1
        try:
            yield
        finally:
            self._loads -= 1
        self.ensure()

    def ensure(self) -> list[str]:
        """Build the index of every searched space that outgrew exact search and has none (a load that ended, or
        one that was interrupted before it could); returns those spaces."""
        with self.database.transaction(read=True) as conn:
            missing = [
                space
                for space, indexed, searched in self.catalogue_spaces(conn)
                if searched and not indexed and self.size(conn, space, fresh=True) > self.hnsw_threshold
            ]
        for space in missing:
            started = time.perf_counter()
            with self.database.transaction() as conn:
                self.leads.decide(conn, space)
                build_index(conn, space, self.database.where, memory_limit=self.build_memory)
            log.info("%s: built the index of %s in %.1f s", self.database.where, space, time.perf_counter() - started)
            self._indexed.add(space)
        self._states.clear()
        return missing

    @staticmethod
    def catalogue_spaces(conn: psycopg.Connection) -> list[tuple[str, bool, bool]]:
        """(space, index built, searched) of every space with a recorded dimension."""
        rows = conn.execute("SELECT space, hnsw, searched FROM spaces ORDER BY space").fetchall()
        return [(str(space), bool(indexed), bool(searched)) for space, indexed, searched in rows]

    def describe(self, conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
        """``info``'s spaces: dimension, index kind ("hnsw"; "flat": searched exactly, small enough; "pending":
        searched exactly until the next `vistext index` builds its index; "none": never searched), size, and
        the leads' dimension where the index holds leads."""
        spaces: dict[str, dict[str, Any]] = {}
        for space in [IMAGE_SPACE, *(row[0] for row in conn.execute(SPACES))]:
            dim, indexed, searched = space_dim(conn, space)
            size = self.size(conn, space, fresh=True)
            kind = "hnsw" if indexed else "none" if not searched else "flat"
            if kind == "flat" and size > self.hnsw_threshold:
                kind = "pending"
            spaces[space] = {"dim": dim, "index": kind if dim else "flat", "size": size if dim else 0}
            if dim and (basis := self.basis(conn, space)) is not None:
                spaces[space]["lead"] = len(basis)  # its index holds the vectors' leading directions (``leads``)
        return spaces

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
        dim, indexed, searched = space_dim(conn, space)
        size = self.size(conn, space, fresh=True) if dim else 0
        if searched and not indexed and size > self.hnsw_threshold and space not in self._warned:
            self._warned.add(space)
            log.warning(
                "%s: space %s has %d vectors and no index yet (an interrupted load?): searched exactly, slowly, "
                "until the next `vistext index` builds it", self.database.where, space, size,
            )  # fmt: skip
        self._states[space] = (time.monotonic(), dim, indexed, size)
        return dim, indexed, size
