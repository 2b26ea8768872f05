"""The embedded default backend: a SQLite catalogue plus FAISS index files next to it.

The catalogue is the truth; each ``<db stem>.<space>.faiss`` file is a cache (``index_files``) that says which
catalogue generation it reflects and carries a checksum of its contents. On first search an index is loaded and
brought up to date with only the rows changed since its generation, or rebuilt from the catalogue when the file
is missing, unreadable, damaged (its checksum does not match) or ahead of the catalogue.
Saving is deferred to ``flush()``/``close()``: after a crash the stamp is simply behind and the next open
catches up, so no batch ever rewrites a large index file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vistext.errors import StoreError
from vistext.store import dates, photo_text, picture_hashes
from vistext.store.base import Store, records_by_page
from vistext.store.records import FileState, ImageFilter, ImageRecord, PhotoMeta, VectorHit, l2_normalise
from vistext.store.sqlite import metadata
from vistext.store.sqlite.catalogue import SCHEMA_VERSION, Catalogue
from vistext.store.sqlite.index_files import IndexFiles
from vistext.store.sqlite.integrity import sqlite_failure
from vistext.store.sqlite.schema import HASHES_FROM
from vistext.store.sqlite.space_indexes import SpaceIndexes
from vistext.store.sqlite.vectors import FLAT, HNSW, HNSW_THRESHOLD

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class SQLiteStore(Store):
    """SQLite catalogue + per-space FAISS indexes (see module docstring). Thread-safe within a process: writes
    share one connection under a lock, reads run on a read-only connection per thread (``_reading``)."""

    backend = "sqlite"

    def __init__(
        self, path: str | Path, *, hnsw_threshold: int = HNSW_THRESHOLD, ef_search: int = 128, **catalogue: Any
    ) -> None:
        self.path = Path(path)
        self.hnsw_threshold = hnsw_threshold
        self.ef_search = ef_search
        self.catalogue = Catalogue(self.path, **catalogue)
        self.files = IndexFiles(self.path, ef_search=ef_search)
        self.indexes = SpaceIndexes(self.path, self.catalogue, self.files, hnsw_threshold, ef_search)
        self._lock = threading.RLock()  # the catalogue's writing connection
        self._index_lock = threading.Lock()  # the in-memory vector indexes: refreshed and searched one at a time
        self._local = threading.local()  # each thread's reading catalogue (``_reading``)
        self._readers: weakref.WeakSet[Catalogue] = weakref.WeakSet()  # closed with the store
        self._closed = False

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise use of the one connection across threads; SQLite failures become StoreError."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as error:
                raise sqlite_failure(self.path, error) from None

    @contextmanager
    def _reading(self) -> Iterator[Catalogue]:
        """The catalogue on this thread's own read-only connection, opened on first use: the reads of a server's
        threads (pages of results, their tags and texts, version checks) run at once instead of queueing for one
        connection, and never wait for a write (WAL). A read sees what was committed when it began."""
        reader = getattr(self._local, "catalogue", None)
        if reader is None:
            if self._closed:
                raise StoreError(f"{self.path}: the catalogue is closed")
            reader = self._local.catalogue = self.catalogue.reader()
            self._readers.add(reader)
        try:
            yield reader
        except sqlite3.Error as error:
            raise sqlite_failure(self.path, error) from None

    # ---- catalogue -----------------------------------------------------------------------------------------
    def file_states(self, prefix: str | None = None) -> dict[str, FileState]:
        with self._locked():
            states = self.catalogue.file_states()
        return states if not prefix else {path: state for path, state in states.items() if path.startswith(prefix)}

    def add(self, records: Sequence[ImageRecord]) -> None:
        with self._locked():
            self.catalogue.upsert(records)

    def remove(self, paths: Sequence[str]) -> None:
        with self._locked():
            self.catalogue.remove(paths)

    def features_for_hash(self, sha: str, model: str) -> ImageRecord | None:
        with self._locked():
            return self.catalogue.features_for_hash(sha, model)

    def get(self, key: int | str) -> ImageRecord | None:
        """The record with this id or path; None for an unknown one (an id beyond 64 bits included)."""
        with self._reading() as catalogue:
            return catalogue.get(int(key) if isinstance(key, np.integer) else key)

    def records(self, ids: Iterable[int] | None = None, status: str | None = "ok") -> Iterator[ImageRecord]:
        def read_ids(chunk: list[int]) -> list[ImageRecord]:  # each page on the connection of the thread asking
            with self._reading() as catalogue:  # for it (a generator may be handed on)
                return catalogue.records_in(chunk, status)

        def read_after(last: int, page: int) -> list[ImageRecord]:
            with self._reading() as catalogue:
                return catalogue.records_after(last, status, page)

        return records_by_page(ids, read_ids, read_after)

    def vectors_of(self, space: str, ids: Iterable[int]) -> dict[int, np.ndarray]:
        wanted = [int(i) for i in ids]  # listed before reading (see picture_hashes)
        with self._reading() as catalogue, catalogue.snapshot():
            blobs = catalogue.vectors.of(space, wanted)
        return {image_id: np.frombuffer(blob, dtype=np.float32).copy() for image_id, blob in blobs.items()}

    def spaces(self) -> list[str]:
        with self._reading() as catalogue:
            return catalogue.vectors.names()

    def paths_missing(self, space: str) -> set[str]:
        with self._locked():
            return self.catalogue.paths_missing(space)

    def version(self) -> int:
        with self._reading() as catalogue:
            return catalogue.generation()

    def count(self, status: str | None = None) -> int:
        with self._reading() as catalogue:
            return catalogue.count(status)

    def set_meta(self, key: str, value: Any) -> None:
        with self._locked():
            self.catalogue.set_meta(f"user:{key}", value)

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._reading() as catalogue:
            return catalogue.get_meta(f"user:{key}", default)

    # ---- metadata and tags ---------------------------------------------------------------------------------
    def ids_matching(self, filter: ImageFilter) -> np.ndarray:
        with self._reading() as catalogue, catalogue.snapshot():
            return metadata.matching_ids(catalogue.conn, catalogue.codec, filter, **catalogue.tables)

    def newest_first(
        self, filter: ImageFilter, k: int, *, offset: int = 0, after: tuple[float, int] | None = None
    ) -> list[tuple[int, float]]:
        uses_meta = any(v is not None for v in (filter.after, filter.before, filter.camera, filter.near))
        if uses_meta and not self.catalogue.has_meta:
            return []  # as ids_matching: a catalogue without metadata passes only metadata-free filters
        with self._reading() as catalogue, catalogue.snapshot() as conn:
            where, params = metadata.filter_sql(
                filter, catalogue.codec, has_tags=catalogue.has_tags, has_text=catalogue.has_text
            )
            return dates.newest_first(
                conn, where, params, "?", k=k, offset=offset, after=after, near=filter.near, has_meta=catalogue.has_meta
            )

    def photo_dates(self, ids: Iterable[int]) -> dict[int, float]:
        with self._reading() as catalogue, catalogue.snapshot() as conn:
            return dates.dates_of(conn, ids, "?", has_meta=catalogue.has_meta)

    def set_tags(self, tagger: str, tags: Mapping[int, Sequence[tuple[str, float]]]) -> None:
        with self._locked(), self.catalogue.transaction() as conn:
            self.catalogue._bump_generation()  # version() changes; no row is stamped, so no vector is re-read
            metadata.set_tags(conn, tagger, tags)

    def ids_tagged_by(self, tagger: str) -> np.ndarray:
        if not self.catalogue.has_tags:
            return np.zeros(0, np.int64)
        with self._reading() as catalogue, catalogue.snapshot() as conn:
            rows = conn.execute("SELECT DISTINCT image_id FROM tags WHERE tagger = ? ORDER BY image_id", (tagger,))
            return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def edit_tags(self, image_id: int, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        with self._locked(), self.catalogue.transaction() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id = ? AND status = 'ok'", (int(image_id),)).fetchone():
                self.catalogue._bump_generation()
                metadata.edit_tags(conn, int(image_id), add, remove)

    def photo_metas(self, ids: Iterable[int]) -> dict[int, PhotoMeta | None]:
        if not self.catalogue.has_meta:
            return {}
        wanted = [int(i) for i in ids if -(2**63) <= int(i) < 2**63]
        with self._reading() as catalogue, catalogue.snapshot() as conn:
            return metadata.photo_metas(conn, wanted)

    def tags_for(self, ids: Iterable[int]) -> dict[int, list[tuple[str, float]]]:
        if not self.catalogue.has_tags:
            return {}
        with self._reading() as catalogue, catalogue.snapshot() as conn:
            return metadata.tags_for(conn, ids)

    def tag_counts(self) -> dict[str, int]:
        if not self.catalogue.has_tags:
            return {}
        with self._reading() as catalogue:
            return metadata.tag_counts(catalogue.conn)

    def set_photo_meta(self, metas: Mapping[str, PhotoMeta]) -> None:
        with self._locked(), self.catalogue.transaction() as conn:
            if metas:
                self.catalogue._bump_generation()
            for path, meta in metas.items():
                metadata.write_meta(conn, self.catalogue.codec.encode(path), meta)

    def picture_hashes(self, shas: Iterable[str]) -> dict[str, tuple[int, int]]:
        shas = list(shas)  # before reading: a generator may read this store
        with self._reading() as catalogue:
            if catalogue.schema_version() < HASHES_FROM:  # an older catalogue opened read-only
                return {}
            with catalogue.snapshot() as conn:
                return picture_hashes.read_hashes(conn, shas, "?")

    def set_picture_hashes(self, hashes: Mapping[str, tuple[int, int]]) -> None:
        if self.readonly or not hashes:
            return
        with self._locked(), self.catalogue.transaction() as conn:  # a cache: no generation bump
            picture_hashes.write_hashes(conn, hashes, "?")

    def _text_read(self, read: Callable[[sqlite3.Connection], _T], empty: _T) -> _T:  # empty: no text table yet
        if not self.catalogue.has_text:
            return empty
        with self._reading() as catalogue, catalogue.snapshot() as conn:
            return read(conn)

    def photo_texts_to_read(self) -> dict[str, str]:
        return self._text_read(partial(photo_text.shas_to_read, decode=self.catalogue.codec.decode), {})

    def set_photo_texts(self, texts: Mapping[str, photo_text.Lines]) -> None:
        with self._locked(), self.catalogue.transaction() as conn:
            if texts:  # what searches show changes: version() moves (no row is stamped, so no vector is re-read)
                self.catalogue._bump_generation()
            photo_text.write_texts(conn, texts, "?")

    def photo_texts(self, ids: Iterable[int]) -> dict[int, str]:  # ids listed before the lock (see picture_hashes)
        return self._text_read(partial(photo_text.texts_for, ids=list(ids), mark="?"), {})

    def photo_text_lines(self, shas: Iterable[str]) -> dict[str, list[tuple[str, float]]]:
        return self._text_read(partial(photo_text.lines_for, shas=list(shas), mark="?"), {})

    def text_matches(self, query: Sequence[str], limit: int = photo_text.MATCH_LIMIT) -> list[tuple[int, str, str]]:
        return self._text_read(lambda conn: metadata.text_matches(conn, self.catalogue.codec, query, limit), [])

    def paths_without_meta(self) -> set[str]:
        if not self.catalogue.has_meta:
            return set()
        with self._locked():
            return metadata.paths_without_meta(self.catalogue.conn, self.catalogue.codec)

    def facets(self) -> dict[str, Any]:
        with self._reading() as catalogue, catalogue.snapshot() as conn:
            found = metadata.facets(conn, catalogue.codec, has_meta=catalogue.has_meta)
            found["tags"] = metadata.tag_counts(conn) if catalogue.has_tags else {}
        return found

    def collection_root(self) -> str | None:
        return str(self.catalogue.root)

    def info(self) -> dict[str, Any]:
        with self._locked():
            spaces = {}
            for space in self.catalogue.vectors.names():
                size = self.catalogue.vectors.count(space)
                cached = self.indexes.cached.get(space)
                kind = cached.index.kind if cached else (HNSW if size > self.hnsw_threshold else FLAT)
                spaces[space] = {"dim": self.catalogue.vectors.dim(space), "index": kind, "size": size}
            return {
                "backend": self.backend,
                "path": str(self.path),
                "schema_version": SCHEMA_VERSION,
                "count": self.catalogue.count(),
                "ok": self.catalogue.count("ok"),
                "failed": self.catalogue.count("failed"),
                "models": self.catalogue.models(),
                "spaces": spaces,
                "db_bytes": self.catalogue.db_bytes(),
                "index_bytes": self.files.total_bytes(),
            }

    # ---- vectors -------------------------------------------------------------------------------------------
    def vectors(self, space: str) -> tuple[np.ndarray, np.ndarray]:
        with self._locked(), self.catalogue.snapshot():
            ids, matrix = self.indexes.read_space(space)
        return ids, matrix

    def search(
        self, space: str, queries: np.ndarray, k: int, restrict: np.ndarray | None = None
    ) -> list[list[VectorHit]]:
        queries = np.asarray(queries, dtype=np.float32)
        queries = queries.reshape(1, -1) if queries.ndim == 1 else queries
        # an index behind the catalogue is brought up to date under both locks, then searched under the index lock
        # alone: a search waits for a write only when there is something new to add to its index
        with self._index_lock:
            index = self.indexes.unchanged(space, self.version())  # the usual case: no write since the last search
            if index is None:
                with self._locked():
                    if space not in self.indexes.cached and space not in self.catalogue.vectors.names():
                        raise StoreError(f"{self.path}: no vector space {space!r}; known: {', '.join(self.spaces())}")
                    index = self.indexes.current(space)
            if index is None or len(index) == 0 or k <= 0:
                return [[] for _ in queries]
            if queries.shape[1] != index.dim:
                raise StoreError(
                    f"{self.path}: query dimension {queries.shape[1]} does not match space {space!r} ({index.dim})"
                )
            scores, ids = index.search(l2_normalise(queries), k, restrict)
        with self._reading() as catalogue:
            paths = catalogue.paths(np.unique(ids[ids >= 0]).tolist())
        # Python numbers, not NumPy scalars, one by one: a composed query's pool is 200 hits per search
        return [
            [VectorHit(i, paths[i], s) for s, i in zip(row_scores, row_ids, strict=True) if i in paths]
            for row_scores, row_ids in zip(scores.tolist(), ids.tolist(), strict=True)
        ]

    @property
    def readonly(self) -> bool:
        return self.catalogue.readonly

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Hold ``<db>.lock`` (an advisory ``flock``, released by the kernel when a process dies) while indexing.

        A second ``vistext index`` into the same catalogue gets a one-line error instead of doing all the work twice.
        """
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            handle = open(lock_path, "a+")  # noqa: SIM115 - held for the duration of the context
        except OSError as error:
            raise StoreError(f"{lock_path}: cannot create the index lock ({error.strerror or error})") from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise StoreError(
                    f"{self.path}: another `vistext index` ({holder}) is writing this catalogue; "
                    "wait for it to finish, then run again"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def flush(self) -> None:
        """Save the indexes that changed (also for a read-only catalogue: they are caches beside it, and carry
        their own stamp); on a read-only mount they stay in memory."""
        with self._locked():
            self.indexes.save_changed()

    def close(self) -> None:
        with self._locked():
            try:
                self.flush()
            except (StoreError, OSError, sqlite3.Error) as error:
                log.warning("%s: vector index not saved (rebuilt on next open): %s", self.path, error)
            finally:
                self.indexes.cached.clear()
                self._closed = True
                for reader in list(self._readers):
                    reader.close()
                self.catalogue.close()
