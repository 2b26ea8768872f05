"""Where a catalogue's files are: paths are stored relative to the collection's root and resolved when read.

The root is the folder that holds the catalogue's ``.vistext`` folder (``photos/.vistext/catalogue.sqlite``
-> ``photos``), or the catalogue's own folder for a catalogue kept elsewhere (``--db``). A file under the root
is stored as ``sub/a.jpg``; moving, renaming or copying the whole folder keeps every row valid. A file outside
the root keeps its absolute path. A name that is not valid UTF-8 (a Linux file name with a Latin-1 byte) is
stored losslessly as the file system's bytes (a BLOB) and comes back as the same ``str`` (surrogate escapes).
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from pathlib import Path, PurePosixPath

from vistext.paths import DB_DIRNAME

_SAMPLE = 50  # absolute paths looked at to find where a moved catalogue's files used to be


def collection_root(catalogue: Path) -> Path:
    """The folder a catalogue's relative paths start from."""
    folder = catalogue.resolve().parent
    return folder.parent if folder.name == DB_DIRNAME else folder


class PathCodec:
    """Absolute path <-> stored value (relative text, absolute text, or file-system bytes)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.prefix = self.root.rstrip(os.sep) + os.sep

    def relative(self, path: str) -> str:
        return path[len(self.prefix) :] if path.startswith(self.prefix) else path

    def encode(self, path: str | os.PathLike[str]) -> str | bytes:
        text = self.relative(os.fspath(path))
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(text)  # surrogate escapes -> the original bytes
        return text

    def decode(self, value: str | bytes) -> str:
        text = os.fsdecode(value) if isinstance(value, bytes) else value
        # a URL (``s3://bucket/a.jpg``, indexed from object storage) is stored as it is, like an absolute path
        return text if os.path.isabs(text) or "://" in text else os.path.join(self.root, text)


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
