"""The catalogue's versioned schema: ``MIGRATIONS[i]`` brings a database from version i to version i + 1.

Append only: a released catalogue is upgraded by running the migrations it lacks, each in the same transaction
as its version bump. A migration gets the connection and the collection's root folder (see ``vistext.store.locations``).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from vistext.errors import StoreError
from vistext.store.locations import PathCodec, collection_root
from vistext.store.picture_hashes import CREATE_TABLE as CREATE_PICTURE_HASHES

CREATE_REMOVED_TAGS = """CREATE TABLE removed_tags (
    image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (image_id, tag)
)"""


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


def _v7(conn: sqlite3.Connection, root: Path) -> None:
    # tags removed by hand (lower case): no tagger's pass gives them to that photo again (Store.edit_tags)
    conn.execute(CREATE_REMOVED_TAGS)


def _v8(conn: sqlite3.Connection, root: Path) -> None:
    # the text found in photos (`vistext index --ocr`; store/photo_text.py), keyed by content hash, and its
    # FTS5 index (external content: the words are indexed, the text is stored once), kept in step by triggers
    # (one statement each: a trigger's body holds semicolons, so not through _script)
    for statement in CREATE_PHOTO_TEXT:
        conn.execute(statement)


CREATE_PHOTO_TEXT = (
    "CREATE TABLE photo_text (sha TEXT PRIMARY KEY, text TEXT NOT NULL, words TEXT NOT NULL, lines TEXT NOT NULL)",
    "CREATE VIRTUAL TABLE photo_text_words USING fts5(words, content = 'photo_text', content_rowid = 'rowid', "
    "tokenize = 'unicode61 remove_diacritics 2')",
    "CREATE TRIGGER photo_text_added AFTER INSERT ON photo_text BEGIN "
    "INSERT INTO photo_text_words (rowid, words) VALUES (new.rowid, new.words); END",
    "CREATE TRIGGER photo_text_removed AFTER DELETE ON photo_text BEGIN "
    "INSERT INTO photo_text_words (photo_text_words, rowid, words) VALUES ('delete', old.rowid, old.words); END",
)

MIGRATIONS: list[Callable[[sqlite3.Connection, Path], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8]
SCHEMA_VERSION = len(MIGRATIONS)
# the oldest version a read-only open can read as it is: v3 changed only what paths mean, not the tables, and
# the catalogue reads a v2-v4 one without the metadata columns (v4) or tags (v5) it lacks
READABLE_FROM = 2
META_FROM = 4  # the first version with the metadata columns
TAGS_FROM = 5  # the first version with the tags table
HASHES_FROM = 6  # the first version with the perceptual-hash cache
REMOVED_TAGS_FROM = 7  # the first version that remembers tags removed by hand
TEXT_FROM = 8  # the first version with the text found in photos


def stored_version(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version the catalogue file at ``path`` says it has: 0 for a file without tables (a catalogue
    about to be made). A file holding another program's tables, not SQLite at all, or with a damaged version is
    refused in one line, before anything is written to it."""
    try:
        tables = sorted(row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        if not tables:
            return 0
        found = None
        if "meta" in tables:
            found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path}: is not a vistext catalogue ({error})") from None
    if found is None:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"{path}: is not a vistext catalogue (it holds another program's tables: {shown}); "
            "pass --db with a new file name"
        )
    try:
        version = json.loads(found[0])
    except (ValueError, TypeError):
        version = None
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise StoreError(
            f"{path}: damaged catalogue: its schema_version is {str(found[0])[:40]!r}, not a whole number; "
            "re-index into a new catalogue (--db NEW_FILE)"
        )
    return version


def check_version(path: Path, version: int, *, readonly: bool) -> None:
    """Refuse a catalogue written by a newer vistext, not a catalogue at all, or too old to be read without
    migrating it (read-only); the last says which command upgrades it."""
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: catalogue schema version {version} was written by a newer vistext "
            f"(this one reads up to {SCHEMA_VERSION}); upgrade vistext"
        )
    if readonly and version == 0:
        raise StoreError(f"{path}: is not a vistext catalogue (an empty database)")
    if readonly and version < READABLE_FROM:
        raise StoreError(
            f"{path}: catalogue schema version {version} must be upgraded before it can be read: run "
            f"`vistext index {collection_root(path)} --db {path}` once where the file can be written (it upgrades "
            "the catalogue, then indexes what changed)"
        )


_SAMPLE = 50  # absolute paths looked at to find where a moved catalogue's files used to be


def _moved_from(root: Path, paths: list[str]) -> str | None:
    """The folder the collection was indexed in, when it has since moved to ``root`` (None if not found)."""
    votes: Counter[str] = Counter()
    for path in paths[:_SAMPLE]:
        parts = PurePosixPath(path).parts
        for depth in range(2, len(parts)):  # shallowest first: the longest relative path that still exists
            if (root.joinpath(*parts[depth:])).exists():
                votes[str(PurePosixPath(*parts[:depth]))] += 1
                break
    if not votes:
        return None
    folder, count = votes.most_common(1)[0]
    return folder if count * 2 >= min(len(paths), _SAMPLE) else None


def relativise(conn: sqlite3.Connection, root: Path) -> int:
    """Rewrite absolute paths under ``root`` (or under where the collection was before a move) as relative.

    A row whose relative path another row already has is a stale duplicate left by indexing a moved folder
    with the previous release: it is deleted with any features no other row shares. Returns rows rewritten.
    """
    codec = PathCodec(root)
    rows = [(i, p) for i, p in conn.execute("SELECT id, path FROM images ORDER BY id") if isinstance(p, str)]
    taken = {p for _, p in rows if not os.path.isabs(p)}
    current = [(i, codec.relative(p)) for i, p in rows if p.startswith(codec.prefix)]
    elsewhere = [(i, p) for i, p in rows if os.path.isabs(p) and not p.startswith(codec.prefix)]
    old = _moved_from(root, [p for _, p in elsewhere])
    if old is not None:
        moved = PathCodec(Path(old))
        current += [(i, moved.relative(p)) for i, p in elsewhere if p.startswith(moved.prefix)]
    rewritten = 0
    for image_id, relative in current:  # rows under the current root first: they are the fresh ones
        if relative in taken:
            conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
            continue
        taken.add(relative)
        conn.execute("UPDATE images SET path = ? WHERE id = ?", (relative, image_id))
        rewritten += 1
    conn.execute("DELETE FROM features WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.sha = features.sha "
                 "AND i.model = features.model)")  # fmt: skip
    conn.execute("DELETE FROM embeddings WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.sha = embeddings.sha)")
    return rewritten
