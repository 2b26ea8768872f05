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
from vistext.store.picture_hashes import CREATE_TABLE as CREATE_PICTURE_HASHES


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


def _v4(conn: sqlite3.Connection, root: Path) -> None:
    # what each photo's file says about it (EXIF + header): NULL until read. Rows of an older catalogue keep
    # NULL width (every readable image has one) until the next `vistext index` reads the headers it lacks.
    # Indexes serve the date and GPS filters; camera and folder filters scan (cheap next to a vector search).
    _script(
        conn,
        """
        ALTER TABLE images ADD COLUMN taken_at REAL;
        ALTER TABLE images ADD COLUMN camera_make TEXT;
        ALTER TABLE images ADD COLUMN camera_model TEXT;
        ALTER TABLE images ADD COLUMN latitude REAL;
        ALTER TABLE images ADD COLUMN longitude REAL;
        ALTER TABLE images ADD COLUMN width INTEGER;
        ALTER TABLE images ADD COLUMN height INTEGER;
        ALTER TABLE images ADD COLUMN orientation INTEGER;
        CREATE INDEX images_taken_at ON images (taken_at);
        CREATE INDEX images_latitude ON images (latitude);
        """,
    )


def _v5(conn: sqlite3.Connection, root: Path) -> None:
    # a trained tagger's tags of every photo (what `vistext index --tagger` / `tag --collection` store); rows go
    # with their image (deleted with it, and when its content changes)
    _script(
        conn,
        """
        CREATE TABLE tags (
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            score REAL NOT NULL,
            tagger TEXT NOT NULL,
            PRIMARY KEY (image_id, tagger, tag)
        );
        CREATE INDEX tags_tag ON tags (tag COLLATE NOCASE);
        """,
    )


def _v6(conn: sqlite3.Connection, root: Path) -> None:
    # the perceptual-hash cache of `vistext duplicates`, keyed by content hash (store/picture_hashes.py)
    conn.execute(CREATE_PICTURE_HASHES)


MIGRATIONS: list[Callable[[sqlite3.Connection, Path], None]] = [_v1, _v2, _v3, _v4, _v5, _v6]
SCHEMA_VERSION = len(MIGRATIONS)
# the oldest version a read-only open can read as it is: v3 changed only what paths mean, not the tables, and
# the catalogue reads a v2-v4 one without the metadata columns (v4) or tags (v5) it lacks
READABLE_FROM = 2
META_FROM = 4  # the first version with the metadata columns
TAGS_FROM = 5  # the first version with the tags table
HASHES_FROM = 6  # the first version with the perceptual-hash cache


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
