"""The catalogue's versioned schema: ``MIGRATIONS[i]`` brings a database from version i to version i + 1.

Append only: a released catalogue is upgraded by running the migrations it lacks, each in the same transaction
as its version bump. A migration gets the connection and the collection's root folder (see ``locations``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from vistext.errors import StoreError
from vistext.store.locations import relativise


def _script(conn: sqlite3.Connection, sql: str) -> None:
    # not executescript(): it commits first, and a migration must be all-or-nothing with its version bump
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


def _v1(conn: sqlite3.Connection, root: Path) -> None:
    _script(
        conn,
        """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            sha TEXT NOT NULL,
            model TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
            error TEXT,
            indexed_at REAL NOT NULL
        );
        CREATE TABLE features (
            sha TEXT NOT NULL, model TEXT NOT NULL, pooled BLOB, logits BLOB, PRIMARY KEY (sha, model)
        );
        CREATE TABLE embeddings (
            sha TEXT NOT NULL, space TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (sha, space)
        );
        """,
    )


def _v2(conn: sqlite3.Connection, root: Path) -> None:
    # generation: lets a vector index fetch only the rows changed since it was built (readers stay cheap while
    # a writer indexes). The sha index serves features_for_hash and orphan clean-up; the space index spaces().
    _script(
        conn,
        """
        ALTER TABLE images ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX images_generation ON images (generation);
        CREATE INDEX images_sha ON images (sha, model);
        CREATE INDEX embeddings_space ON embeddings (space);
        """,
    )


def _v3(conn: sqlite3.Connection, root: Path) -> None:
    # paths relative to the collection's root, so a moved or copied folder keeps its index; the generation bump
    # makes vector indexes re-check their rows (stale duplicates of a moved folder are deleted here)
    relativise(conn, root)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('generation', '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


MIGRATIONS: list[Callable[[sqlite3.Connection, Path], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)
# the oldest version a read-only open can read as it is: v3 changed only what paths mean, not the tables
READABLE_FROM = 2


def check_version(path: Path, version: int, *, readonly: bool) -> None:
    """Refuse a catalogue written by a newer vistext, or too old to be read without migrating it (read-only)."""
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: catalogue schema version {version} was written by a newer vistext "
            f"(this one reads up to {SCHEMA_VERSION}); upgrade vistext"
        )
    if readonly and version < READABLE_FROM:
        raise StoreError(
            f"{path}: catalogue schema version {version} must be upgraded before it can be read, and it is "
            "read-only; open it once where it can be written (or pass --db PATH to index elsewhere)"
        )
