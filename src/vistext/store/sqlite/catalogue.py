"""The SQLite catalogue: one row per indexed file, features shared by content hash, versioned schema.

Concurrency model: WAL journal, a busy timeout, and short explicit transactions, so any number of readers
(other processes searching) work while one process writes; a writer killed mid-transaction loses only that
transaction. Every write bumps a ``generation`` counter in ``meta`` and stamps the rows it touched with it,
which is how vector indexes (caches of this catalogue) find out what changed.
"""

from __future__ import annotations

import copy
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from vistext.errors import StoreError
from vistext.store.locations import PathCodec, collection_root
from vistext.store.records import ID_RANGE, IMAGE_SPACE, FileState, ImageRecord, from_blob, to_blob
from vistext.store.sqlite import metadata
from vistext.store.sqlite.connection import connect_reader, connect_readonly, connect_writable, writable
from vistext.store.sqlite.integrity import check_image_row, check_vector
from vistext.store.sqlite.schema import (
    META_FROM,
    MIGRATIONS,
    SCHEMA_VERSION,
    TAGS_FROM,
    TEXT_FROM,
    check_version,
    stored_version,
)
from vistext.store.sqlite.space_vectors import SpaceVectors

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Catalogue"]

log = logging.getLogger(__name__)

_CHUNK = 500  # ids/paths per IN (...) list, well below SQLite's variable limit


_IMAGE_COLUMNS = "i.id, i.path, i.size, i.mtime, i.sha, i.model, i.status, i.error"


class Catalogue:
    """The SQLite side of the embedded store (see module docstring)."""

    def __init__(
        self,
        path: str | Path,
        *,
        target_version: int = SCHEMA_VERSION,
        timeout: float = 30.0,
        readonly: bool | None = None,
    ) -> None:
        """Open (creating if needed) the catalogue at ``path``.

        ``readonly=True`` opens an existing catalogue without writing anything (no journal, no migration, no
        lock files where the folder is read-only); ``False`` needs write access and says where to write instead
        when there is none; ``None`` writes when it can and reads an existing catalogue it cannot write.
        """
        self.path = Path(path)
        self.timeout = timeout
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a folder, not a catalogue file")
        self.root = collection_root(self.path)
        self.codec = PathCodec(self.root)
        if readonly is None:
            readonly = self.path.exists() and not writable(self.path)
        self.readonly = readonly
        try:
            if readonly:
                self.conn = connect_readonly(self.path, timeout)
                check_version(self.path, self.schema_version(), readonly=True)
            else:
                self._refuse_foreign(timeout)
                self.conn = connect_writable(self.path, timeout)
                self._migrate(target_version)
        except sqlite3.Error as error:
            self.close()
            raise StoreError(f"{self.path}: cannot open catalogue: {error}") from None
        except StoreError:
            self.close()
            raise
        self.vectors = SpaceVectors(self.conn, self.path)
        version = self.schema_version()  # a read-only older catalogue lacks the newer columns and tables
        self.has_meta, self.has_tags = version >= META_FROM, version >= TAGS_FROM
        self.has_text = version >= TEXT_FROM

    @property
    def tables(self) -> dict[str, bool]:
        """Which of the newer tables and columns this catalogue has (``has_meta``, ``has_tags``, ``has_text``)."""
        return {"has_meta": self.has_meta, "has_tags": self.has_tags, "has_text": self.has_text}

    # ---- schema --------------------------------------------------------------------------------------------
    def schema_version(self) -> int:
        return stored_version(self.conn, self.path)

    def _refuse_foreign(self, timeout: float) -> None:
        """Look before writing: another program's SQLite file (or any other file) is refused before the journal
        mode is switched or a table is made, so not one byte of it changes."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        probe = connect_readonly(self.path, timeout)
        try:
            stored_version(probe, self.path)
        finally:
            probe.close()

    def _migrate(self, target: int) -> None:
        with self.transaction():
            version = self.schema_version()
            check_version(self.path, version, readonly=False)
            for number in range(version, min(target, SCHEMA_VERSION)):
                MIGRATIONS[number](self.conn, self.root)
                self._put_meta("schema_version", number + 1)
                log.info("%s: migrated catalogue schema to version %d", self.path, number + 1)
            if self.get_meta("catalogue_id") is None:  # made once: what ties a cache file to this catalogue
                self._put_meta("catalogue_id", uuid.uuid4().hex)

    # ---- transactions --------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; IMMEDIATE takes the write lock up front so it never fails half-way on a busy db."""
        if self.readonly:
            raise StoreError(
                f"{self.path}: the catalogue is open read-only (read-only folder or file); "
                "pass --db PATH to write an index somewhere else"
            )
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")

    def reader(self) -> Catalogue:
        """This catalogue on a connection of its own that only reads (``mode=ro``): one per thread lets reads of
        different threads run at once (WAL), none of them waiting for another's or for the writer's."""
        clone = copy.copy(self)
        clone.conn = connect_reader(self.path, self.timeout)
        clone.vectors = SpaceVectors(clone.conn, self.path)
        return clone

    def close(self) -> None:
        if hasattr(self, "conn"):
            self.conn.close()

    # ---- meta ----------------------------------------------------------------------------------------------
    def _put_meta(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction():
            self._put_meta(key, value)

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def generation(self) -> int:
        return int(self.get_meta("generation", 0))

    def identity(self) -> str | None:
        """This catalogue's random id, made when it was first opened for writing: a generation number alone
        cannot tell a replaced catalogue from the one a cache file was made from (both count from 0)."""
        found = self.get_meta("catalogue_id")
        return found if isinstance(found, str) else None

    def _bump_generation(self) -> int:
        generation = self.generation() + 1
        self._put_meta("generation", generation)
        return generation

    # ---- writes --------------------------------------------------------------------------------------------
    def upsert(self, records: Sequence[ImageRecord]) -> None:
        now = time.time()
        with self.transaction() as conn:
            generation = self._bump_generation()
            replaced: set[tuple[str, str]] = set()
            for record in records:
                if record.status not in ("ok", "failed"):
                    raise StoreError(f"{record.path}: status must be 'ok' or 'failed', got {record.status!r}")
                stored = self.codec.encode(record.path)
                old = conn.execute("SELECT sha, model, id FROM images WHERE path = ?", (stored,)).fetchone()
                if old is not None and tuple(old[:2]) != (record.sha, record.model):
                    replaced.add((old[0], old[1]))
                conn.execute(
                    """INSERT INTO images (path, size, mtime, sha, model, status, error, indexed_at, generation)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime = excluded.mtime,
                         sha = excluded.sha, model = excluded.model, status = excluded.status,
                         error = excluded.error, indexed_at = excluded.indexed_at, generation = excluded.generation""",
                    (
                        stored,
                        int(record.size),
                        float(record.mtime),
                        record.sha,
                        record.model,
                        record.status,
                        record.error,
                        now,
                        generation,
                    ),
                )
                if record.status == "ok":
                    self._put_features(record, generation)
                metadata.upserted(conn, record, stored, old, has_meta=self.has_meta, has_tags=self.has_tags)
            for sha, model in replaced:
                self._drop_orphans(sha, model)

    def _put_features(self, record: ImageRecord, generation: int) -> None:
        touched = False
        if record.pooled is not None or record.logits is not None:
            self.conn.execute(
                """INSERT INTO features (sha, model, pooled, logits) VALUES (?, ?, ?, ?)
                   ON CONFLICT (sha, model) DO UPDATE SET pooled = coalesce(excluded.pooled, pooled),
                     logits = coalesce(excluded.logits, logits)""",
                (record.sha, record.model, to_blob(record.pooled), to_blob(record.logits)),
            )
            touched = True
        for space, vector in record.embeddings.items():
            if space == IMAGE_SPACE:
                raise StoreError(f"{record.path}: embedding space name {IMAGE_SPACE!r} is reserved")
            self.conn.execute(
                """INSERT INTO embeddings (sha, space, vector) VALUES (?, ?, ?)
                   ON CONFLICT (sha, space) DO UPDATE SET vector = excluded.vector""",
                (record.sha, space, to_blob(vector)),
            )
            touched = True
        if touched:  # other files with this content share the vectors: their index entries are stale too
            self.conn.execute("UPDATE images SET generation = ? WHERE sha = ?", (generation, record.sha))

    def _drop_orphans(self, sha: str, model: str) -> None:
        self.conn.execute(
            "DELETE FROM features WHERE sha = ? AND model = ? AND NOT EXISTS "
            "(SELECT 1 FROM images WHERE sha = ? AND model = ?)",
            (sha, model, sha, model),
        )
        self.conn.execute(
            "DELETE FROM embeddings WHERE sha = ? AND NOT EXISTS (SELECT 1 FROM images WHERE sha = ?)", (sha, sha)
        )
        self.conn.execute(  # the perceptual-hash cache is keyed by content too: no photo left, no row
            "DELETE FROM picture_hashes WHERE sha = ? AND NOT EXISTS (SELECT 1 FROM images WHERE sha = ?)", (sha, sha)
        )
        if self.has_text:  # so is the text found in photos
            self.conn.execute(
                "DELETE FROM photo_text WHERE sha = ? AND NOT EXISTS (SELECT 1 FROM images WHERE sha = ?)", (sha, sha)
            )

    def remove(self, paths: Sequence[str]) -> list[int]:
        removed: list[int] = []
        with self.transaction() as conn:
            self._bump_generation()
            for start in range(0, len(paths), _CHUNK):
                chunk = [self.codec.encode(path) for path in paths[start : start + _CHUNK]]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT id, sha, model FROM images WHERE path IN ({marks})", chunk).fetchall()
                conn.execute(f"DELETE FROM images WHERE path IN ({marks})", chunk)
                for image_id, sha, model in rows:
                    removed.append(image_id)
                    self._drop_orphans(sha, model)
                if self.has_tags:
                    metadata.drop_tags(conn, [row[0] for row in rows])
        return removed

    # ---- reads ---------------------------------------------------------------------------------------------
    def file_states(self) -> dict[str, FileState]:
        states = {}
        for row in self.conn.execute("SELECT id, path, size, mtime, sha, model, status FROM images"):
            check_image_row(self.path, row, columns=7)
            state = FileState(self.codec.decode(row[1]), *row[2:])
            states[state.path] = state
        return states

    def _records(self, where: str, params: Sequence[Any], limit: int = -1) -> list[ImageRecord]:
        meta = ", " + metadata.META_SELECT if self.has_meta else ""
        rows = self.conn.execute(
            f"""SELECT {_IMAGE_COLUMNS}, f.pooled, f.logits{meta} FROM images i
                LEFT JOIN features f ON f.sha = i.sha AND f.model = i.model AND i.status = 'ok'
                WHERE {where} ORDER BY i.id LIMIT {int(limit)}""",
            params,
        ).fetchall()
        for row in rows:
            check_image_row(self.path, row)
            check_vector(self.path, f"pooled feature of image {row[0]}", row[8])
            check_vector(self.path, f"logits of image {row[0]}", row[9])
        ok_shas = sorted({row[4] for row in rows if row[6] == "ok"})
        embeddings: dict[str, dict[str, np.ndarray]] = {}
        for start in range(0, len(ok_shas), _CHUNK):
            chunk = ok_shas[start : start + _CHUNK]
            query = f"SELECT sha, space, vector FROM embeddings WHERE sha IN ({','.join('?' * len(chunk))})"
            for sha, space, blob in self.conn.execute(query, chunk):
                check_vector(self.path, f"{space!r} embedding", blob)
                embeddings.setdefault(sha, {})[space] = np.frombuffer(blob, dtype=np.float32).copy()
        return [
            ImageRecord(
                id=row[0],
                path=self.codec.decode(row[1]),
                size=row[2],
                mtime=row[3],
                sha=row[4],
                model=row[5],
                status=row[6],
                error=row[7],
                pooled=from_blob(row[8]),
                logits=from_blob(row[9]),
                embeddings=dict(embeddings.get(row[4], {})) if row[6] == "ok" else {},
                meta=metadata.meta_from_row(row[10:]) if self.has_meta else None,
            )
            for row in rows
        ]

    def get(self, key: int | str) -> ImageRecord | None:
        value: int | str | bytes
        if isinstance(key, int):
            if key not in ID_RANGE:
                return None
            column, value = "i.id", key
        else:
            column, value = "i.path", self.codec.encode(key)
        with self.snapshot():
            found = self._records(f"{column} = ?", (value,))
        return found[0] if found else None

    def features_for_hash(self, sha: str, model: str) -> ImageRecord | None:
        with self.snapshot():
            found = self._records(
                "i.id = (SELECT id FROM images WHERE sha = ? AND model = ? AND status = 'ok' LIMIT 1)", (sha, model)
            )
        return found[0] if found else None

    def records_in(self, ids: list[int], status: str | None = "ok") -> list[ImageRecord]:
        """The records of ``ids`` (a page of 64-bit ids, ``store.base.records_by_page``), by id."""
        status_sql, status_args = _status(status)
        with self.snapshot():
            return self._records(f"i.id IN ({','.join('?' * len(ids))}){status_sql}", ids + status_args)

    def records_after(self, last: int, status: str | None, page: int) -> list[ImageRecord]:
        """Keyset paging: the next ``page`` records after id ``last`` (a short query each, so a writer is never
        blocked for long)."""
        status_sql, status_args = _status(status)
        with self.snapshot():
            return self._records(f"i.id > ?{status_sql}", [last, *status_args], limit=page)

    def paths(self, ids: Sequence[int]) -> dict[int, str]:
        """Id -> absolute path of these ids (unknown ids are left out)."""
        found: dict[int, str] = {}
        wanted = [int(i) for i in ids if int(i) in ID_RANGE]
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = self.conn.execute(f"SELECT id, path FROM images WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            found.update((image_id, self.codec.decode(path)) for image_id, path in rows)
        return found

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self.conn.execute("SELECT count(*) FROM images").fetchone()[0])
        return int(self.conn.execute("SELECT count(*) FROM images WHERE status = ?", (status,)).fetchone()[0])

    def models(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT model, count(*) FROM images WHERE status = 'ok' GROUP BY model")
        return {model: int(n) for model, n in rows}

    def paths_missing(self, space: str) -> set[str]:
        """Paths of readable images that have no vector in embedding ``space`` (e.g. indexed before a model)."""
        rows = self.conn.execute(
            """SELECT i.path FROM images i WHERE i.status = 'ok' AND NOT EXISTS
                 (SELECT 1 FROM embeddings e WHERE e.sha = i.sha AND e.space = ?)""",
            (space,),
        )
        return {self.codec.decode(row[0]) for row in rows}

    def db_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())


def _status(status: str | None) -> tuple[str, list[Any]]:
    return ("", []) if status is None else (" AND i.status = ?", [status])
