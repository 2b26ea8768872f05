"""The server backend: catalogue and vectors in one PostgreSQL database with pgvector (``postgresql://...``).

Every write is one transaction with idempotent upserts (``ON CONFLICT``), so a retried batch never duplicates a
row and many processes (indexing workers, servers) may write and search at once; there is no cache to keep in
step: each searched space's HNSW index lives in the server (``indexes``), and ``bulk_load`` builds it once at
the end of a large load. Searches of several queries are one round trip (a ``LATERAL`` join over the query
array); a space without its index (at most ``hnsw_threshold`` vectors) is searched exactly, a larger one
through HNSW with ``hnsw.ef_search`` = ``ef_search``. ``vectors(space)`` streams ``COPY ... (FORMAT BINARY)``
into the one array it returns. Paths are stored as the file system's bytes (any file name round-trips),
absolute: a moved folder is re-indexed.

The store is composed of a ``Database`` (the connection pool and its transactions) and ``Spaces`` (each space's
dimension, size and HNSW state); the SQL itself lives in ``reads``, ``writes``, ``search`` and ``metadata``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from vistext.errors import StoreError
from vistext.store import dates, photo_text, picture_hashes
from vistext.store.base import Store, records_by_page
from vistext.store.postgres import metadata
from vistext.store.postgres.database import Database, advisory_writer_lock
from vistext.store.postgres.indexes import EF_CONSTRUCTION, HNSW_M, memory_limit
from vistext.store.postgres.reads import SPACES, catalogue_summary, file_states, read_records, vectors_by_id
from vistext.store.postgres.schema import HASHES_FROM, TEXT_FROM, migrate, schema_version
from vistext.store.postgres.search import (
    EF_MAX,
    EF_SEARCH,
    HNSW_THRESHOLD,
    SearchPlan,
    nearest,
    space_dim,
    stream_vectors,
)
from vistext.store.postgres.spaces import Spaces
from vistext.store.postgres.writes import drop_orphans, write_batch
from vistext.store.records import ID_RANGE, IMAGE_SPACE, FileState, ImageFilter, ImageRecord, PhotoMeta, VectorHit

_T = TypeVar("_T")


class PostgresStore(Store):
    """PostgreSQL + pgvector store (see module docstring). Thread-safe: a connection pool serves the threads."""

    backend = "postgresql"
    searches_elsewhere = True  # the graph walk runs in PostgreSQL's processes

    def __init__(
        self,
        url: str,
        *,
        hnsw_threshold: int = HNSW_THRESHOLD,
        ef_search: int = EF_SEARCH,
        readonly: bool | None = None,
        timeout: float = 30.0,
        pool_size: int = 8,
        build_memory: int | None = None,
    ) -> None:
        self.database = Database(
            url, readonly=bool(readonly), timeout=timeout, pool_size=pool_size, ef_search=ef_search
        )
        self.url, self.where = self.database.url, self.database.where
        self.ef_search = ef_search  # set with each search through an index (SET LOCAL, in the same round trip)
        self.space_state = Spaces(self.database, hnsw_threshold, build_memory or memory_limit())
        self._tx = self.database.transaction
        if not self.database.readonly:
            try:
                with self._tx() as conn:
                    migrate(conn, self.where)
            except StoreError:
                self.database.close()
                raise

    @property
    def hnsw_threshold(self) -> int:
        return self.space_state.hnsw_threshold

    @hnsw_threshold.setter
    def hnsw_threshold(self, value: int) -> None:
        self.space_state.hnsw_threshold = value

    # ---- catalogue -----------------------------------------------------------------------------------------
    def picture_hashes(self, shas: Iterable[str]) -> dict[str, tuple[int, int]]:
        shas = list(shas)  # before taking a connection: a generator may read this store
        with self._tx(read=True) as conn:
            if schema_version(conn) < HASHES_FROM:  # an older catalogue opened read-only: no cache table yet
                return {}
            return picture_hashes.read_hashes(conn, shas, "%s")

    def set_picture_hashes(self, hashes: Mapping[str, tuple[int, int]]) -> None:
        if not self.database.readonly and hashes:
            with self._tx() as conn:
                picture_hashes.write_hashes(conn, hashes, "%s")

    def _text_read(self, read: Callable[[psycopg.Connection], _T], empty: _T) -> _T:
        """``read`` in a read transaction; ``empty`` from a catalogue older than the text table (read-only)."""
        with self._tx(read=True) as conn:
            return read(conn) if schema_version(conn) >= TEXT_FROM else empty

    def photo_texts_to_read(self) -> dict[str, str]:
        return self._text_read(lambda conn: photo_text.shas_to_read(conn, lambda path: os.fsdecode(bytes(path))), {})

    def set_photo_texts(self, texts: Mapping[str, photo_text.Lines]) -> None:
        self.database.check_writable()
        with self._tx() as conn:
            photo_text.write_texts(conn, texts, "%s")
            if texts:  # what searches show changes
                self._bump(conn)

    def photo_texts(self, ids: Iterable[int]) -> dict[int, str]:
        ids = list(ids)  # before taking a connection: a generator may read this store
        return self._text_read(lambda conn: photo_text.texts_for(conn, ids, "%s"), {})

    def photo_text_lines(self, shas: Iterable[str]) -> dict[str, list[tuple[str, float]]]:
        shas = list(shas)
        return self._text_read(lambda conn: photo_text.lines_for(conn, shas, "%s"), {})

    def text_matches(self, query: Sequence[str], limit: int = photo_text.MATCH_LIMIT) -> list[tuple[int, str, str]]:
        return self._text_read(lambda conn: metadata.text_matches(conn, query, limit), [])

    def file_states(self, prefix: str | None = None) -> dict[str, FileState]:
        with self._tx(read=True) as conn:
            return file_states(conn, prefix)

    def add(self, records: Sequence[ImageRecord]) -> None:
        self.database.check_writable()
        for record in records:
            if record.status not in ("ok", "failed"):
                raise StoreError(f"{record.path}: status must be 'ok' or 'failed', got {record.status!r}")
            if IMAGE_SPACE in record.embeddings:
                raise StoreError(f"{record.path}: embedding space name {IMAGE_SPACE!r} is reserved")
        if not records:
            return
        ok = [r for r in records if r.status == "ok"]
        with self._tx() as conn:
            self.space_state.create(conn, ok)
            write_batch(conn, records, self.space_state.bases(conn, ok))
            self._bump(conn)
        self.space_state.grown(ok)

    @contextmanager
    def bulk_load(self, rows: int) -> Iterator[None]:
        """Indexes a load of ``rows`` would grow a row at a time are dropped, and built when it ends (``Spaces``)."""
        self.database.check_writable()
        with self.space_state.bulk_load(rows):
            yield

    def mark_unsearched(self, spaces: Iterable[str]) -> None:
        self.database.check_writable()
        self.space_state.mark_unsearched(spaces)

    def build_index(self, space: str, *, m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION) -> float:
        """(Re)build ``space``'s HNSW index now, whatever its size (e.g. after a bulk load with a huge
        ``hnsw_threshold``); returns the seconds it took."""
        self.database.check_writable()
        started = time.perf_counter()
        self.space_state.build(space, m=m, ef_construction=ef_construction)
        return time.perf_counter() - started

    def _bump(self, conn: psycopg.Connection) -> None:
        # last statement of a write: the row lock on the counter is held only until the commit that follows
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('generation', '1') "
            "ON CONFLICT (key) DO UPDATE SET value = to_jsonb(meta.value::bigint + 1)"
        )
        self.space_state.changed()

    def remove(self, paths: Sequence[str]) -> None:
        self.database.check_writable()
        encoded = [os.fsencode(path) for path in paths]
        with self._tx() as conn:
            gone = conn.execute("DELETE FROM images WHERE path = ANY(%s) RETURNING sha, model", (encoded,)).fetchall()
            drop_orphans(conn, {(sha, model) for sha, model in gone})
            self._bump(conn)

    def features_for_hash(self, sha: str, model: str) -> ImageRecord | None:
        with self._tx(snapshot=True) as conn:
            found = read_records(
                conn, sql.SQL("i.id = (SELECT id FROM images WHERE sha = %s AND model = %s AND status = 'ok' LIMIT 1)"),
                [sha, model],
            )  # fmt: skip
        return found[0] if found else None

    def get(self, key: int | str) -> ImageRecord | None:
        value: int | bytes
        if isinstance(key, (int, np.integer)):
            if int(key) not in ID_RANGE:
                return None
            where, value = sql.SQL("i.id = %s"), int(key)
        else:
            where, value = sql.SQL("i.path = %s"), os.fsencode(key)
        with self._tx(snapshot=True) as conn:
            found = read_records(conn, where, [value])
        return found[0] if found else None

    def records(self, ids: Iterable[int] | None = None, status: str | None = "ok") -> Iterator[ImageRecord]:
        status_sql = sql.SQL("") if status is None else sql.SQL(" AND i.status = {}").format(sql.Literal(status))

        def read(where: sql.Composable, value: Any, limit: int | None = None) -> list[ImageRecord]:
            with self._tx(snapshot=True) as conn:  # a short transaction per page
                return read_records(conn, where + status_sql, [value], limit=limit)

        return records_by_page(
            ids,
            lambda chunk: read(sql.SQL("i.id = ANY(%s)"), chunk),
            lambda last, page: read(sql.SQL("i.id > %s"), last, page),
        )

    def spaces(self) -> list[str]:
        with self._tx(read=True) as conn:
            return [IMAGE_SPACE, *(row[0] for row in conn.execute(SPACES))]

    def paths_missing(self, space: str) -> set[str]:
        with self._tx(read=True) as conn:
            rows = conn.execute(
                """SELECT i.path FROM images i WHERE i.status = 'ok' AND NOT EXISTS
                     (SELECT 1 FROM embeddings e WHERE e.sha = i.sha AND e.space = %s)""",
                (space,),
            )
            return {os.fsdecode(bytes(row[0])) for row in rows}

    def version(self) -> int:
        with self._tx(read=True) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def count(self, status: str | None = None) -> int:
        with self._tx(read=True) as conn:
            if status is None:
                row = conn.execute("SELECT count(*) FROM images").fetchone()
            else:
                row = conn.execute("SELECT count(*) FROM images WHERE status = %s", (status,)).fetchone()
        return int(row[0]) if row else 0

    def set_meta(self, key: str, value: Any) -> None:
        self.database.check_writable()
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (f"user:{key}", Jsonb(value)),
            )

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._tx(read=True) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = %s", (f"user:{key}",)).fetchone()
        return row[0] if row else default

    def info(self) -> dict[str, Any]:
        with self._tx(snapshot=True) as conn:
            spaces = self.space_state.describe(conn)
            summary = catalogue_summary(conn)
        return {"backend": self.backend, "path": self.where, "schema_version": self.schema_version(), **summary,
                "spaces": spaces}  # fmt: skip

    def schema_version(self) -> int:
        with self._tx(read=True) as conn:
            return schema_version(conn)

    # ---- metadata and tags ---------------------------------------------------------------------------------
    def ids_matching(self, filter: ImageFilter) -> np.ndarray:
        with self._tx(snapshot=True) as conn:
            return metadata.matching_ids(conn, filter)

    def newest_first(
        self, filter: ImageFilter, k: int, *, offset: int = 0, after: tuple[float, int] | None = None
    ) -> list[tuple[int, float]]:
        with self._tx(snapshot=True) as conn:
            where, params = metadata.filter_where(conn, filter)
            text = where.as_string(conn)
            return dates.newest_first(conn, text, params, "%s", k=k, offset=offset, after=after, near=filter.near)

    def photo_dates(self, ids: Iterable[int]) -> dict[int, float]:
        with self._tx(read=True) as conn:
            return dates.dates_of(conn, ids, "%s")

    def set_tags(self, tagger: str, tags: Mapping[int, Sequence[tuple[str, float]]]) -> None:
        self.database.check_writable()
        with self._tx() as conn:
            metadata.set_tags(conn, tagger, tags)
            self._bump(conn)

    def ids_tagged_by(self, tagger: str) -> np.ndarray:
        with self._tx(read=True) as conn:
            rows = conn.execute("SELECT DISTINCT image_id FROM tags WHERE tagger = %s ORDER BY image_id", (tagger,))
            return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def edit_tags(self, image_id: int, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        self.database.check_writable()
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id = %s AND status = 'ok'", (int(image_id),)).fetchone():
                metadata.edit_tags(conn, int(image_id), add, remove)
                self._bump(conn)

    def photo_metas(self, ids: Iterable[int]) -> dict[int, PhotoMeta | None]:
        with self._tx(read=True) as conn:
            return metadata.photo_metas(conn, [int(i) for i in ids if int(i) in ID_RANGE])

    def tags_for(self, ids: Iterable[int]) -> dict[int, list[tuple[str, float]]]:
        with self._tx(read=True) as conn:
            return metadata.tags_for(conn, [int(i) for i in ids if int(i) in ID_RANGE])

    def tag_counts(self) -> dict[str, int]:
        with self._tx(read=True) as conn:
            return metadata.tag_counts(conn)

    def set_photo_meta(self, metas: Mapping[str, PhotoMeta]) -> None:
        self.database.check_writable()
        with self._tx() as conn:
            metadata.set_photo_meta(conn, metas)
            self._bump(conn)

    def paths_without_meta(self) -> set[str]:
        with self._tx(read=True) as conn:
            rows = conn.execute("SELECT path FROM images WHERE status = 'ok' AND width IS NULL")
            return {os.fsdecode(bytes(row[0])) for row in rows}

    def facets(self) -> dict[str, Any]:
        with self._tx(snapshot=True) as conn:
            return metadata.facets(conn)

    def collection_root(self) -> str | None:
        with self._tx(read=True) as conn:
            return metadata.collection_root(conn)

    # ---- vectors -------------------------------------------------------------------------------------------
    def vectors(self, space: str) -> tuple[np.ndarray, np.ndarray]:
        with self._tx(snapshot=True) as conn:
            return stream_vectors(
                conn, space, self.space_state.size(conn, space, fresh=True), space_dim(conn, space)[0]
            )

    def vectors_of(self, space: str, ids: Iterable[int]) -> dict[int, np.ndarray]:
        with self._tx(read=True) as conn:
            return vectors_by_id(conn, space, list(ids))

    def search(
        self, space: str, queries: np.ndarray, k: int, restrict: np.ndarray | None = None
    ) -> list[list[VectorHit]]:
        queries = np.asarray(queries, dtype=np.float32)
        queries = queries.reshape(1, -1) if queries.ndim == 1 else queries
        with self._tx(read=True) as conn:
            dim, indexed, size = self.space_state.state(conn, space)
            if space != IMAGE_SPACE and not size:  # on this connection: another could wait on a busy pool
                known = [IMAGE_SPACE, *(row[0] for row in conn.execute(SPACES))]
                if space not in known:
                    raise StoreError(f"{self.where}: no vector space {space!r}; known: {', '.join(known)}")
            if not dim or not size or k <= 0 or not len(queries) or (restrict is not None and not len(restrict)):
                return [[] for _ in queries]
            if queries.shape[1] != dim:
                raise StoreError(
                    f"{self.where}: query dimension {queries.shape[1]} does not match space {space!r} ({dim})"
                )
            exact = not indexed or size <= self.hnsw_threshold
            basis = None if exact else self.space_state.basis(conn, space)
            plan = SearchPlan(space, dim, k, exact=exact, ef_search=self.ef_search, basis=basis)
            # no index: the planner's own choice (a scan) is right, one statement, one round trip
            if restrict is None and not indexed and k <= EF_MAX:
                return nearest(conn, plan, queries, self.where, settings=False)
        with self._tx() as conn:
            return nearest(conn, plan, queries, self.where, restrict)

    # ---- locking and lifetime --------------------------------------------------------------------------
    @property
    def readonly(self) -> bool:
        return self.database.readonly

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """A server-side advisory lock: a second indexing run fails at once, naming the first. A server that
        dies meanwhile is a one-line ``StoreError``, not a driver traceback."""
        try:
            with self.database.pool.connection() as conn, advisory_writer_lock(conn, self.where):
                yield
        except psycopg.Error as error:
            raise StoreError(f"{self.where}: {(str(error).splitlines() or [type(error).__name__])[0]}") from None

    def flush(self) -> None:
        """Nothing to do: every write is committed by the server when ``add``/``remove`` return."""

    def close(self) -> None:
        self.database.close()
