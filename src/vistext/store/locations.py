"""Where a catalogue's files are: paths are stored relative to the collection's root and resolved when read.

The root is the folder that holds the catalogue's ``.vistext`` folder (``photos/.vistext/catalogue.sqlite``
-> ``photos``), or the catalogue's own folder for a catalogue kept elsewhere (``--db``). A file under the root
is stored as ``sub/a.jpg``; moving, renaming or copying the whole folder keeps every row valid. A file outside
the root keeps its absolute path. A name that is not valid UTF-8 (a Linux file name with a Latin-1 byte) is
stored losslessly as the file system's bytes (a BLOB) and comes back as the same ``str`` (surrogate escapes).
"""

from __future__ import annotations

import os
from pathlib import Path

from vistext.paths import DB_DIRNAME


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


def folder_prefix(codec: PathCodec, folder: str) -> str:
    """The stored-path prefix of ``folder`` (relative to the collection's root, or absolute), ending in "/"."""
    text = folder.strip()
    if os.path.isabs(text):
        text = os.path.normpath(text)
        if text == codec.root.rstrip(os.sep):
            return ""
        text = codec.relative(text + os.sep)
        return text if text.endswith(os.sep) else text + os.sep
    text = os.path.normpath(text).lstrip(os.sep)
    return "" if text in ("", ".") else text + os.sep
