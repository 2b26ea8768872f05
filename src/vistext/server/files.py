"""Serving an indexed original without following links: only a regular file still at its indexed place.

A file swapped for a symlink after indexing (to a text file outside the collection, or to ``/dev/zero``)
must not be served. The path is opened one component at a time below the collection's folder with
``O_NOFOLLOW``, so no symlink anywhere on the way is followed and nothing can be swapped between a check and
the open; the opened file is then checked with ``fstat`` (a regular file), and exactly its size is sent.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import anyio

from vistext.service.explore import UnknownImageError

CHUNK = 256 * 1024
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO for reading must not wait for a writer


@dataclass
class OpenFile:
    """An opened indexed original: its descriptor (closed by ``chunks``), size, type and headers."""

    fd: int
    size: int
    media_type: str
    headers: dict[str, str]

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes, at most ``size`` of them; closes the descriptor when done or abandoned."""
        left = self.size
        try:
            while left > 0:
                data = await anyio.to_thread.run_sync(os.read, self.fd, min(CHUNK, left))
                if not data:
                    break
                left -= len(data)
                yield data
        finally:
            os.close(self.fd)


def open_indexed_file(image_id: int, path: Path, base: Path | None) -> OpenFile:
    """Open indexed image ``image_id`` at ``path`` (below ``base``, the collection folder, when known; else
    every component from ``/`` down). ``UnknownImageError`` (404) when it is gone, is not a regular file or
    is reached through a symlink."""
    path = Path(os.path.abspath(path))
    if base is None or not path.is_relative_to(base):
        base = Path(path.anchor)
    parts = path.relative_to(base).parts
    refused = UnknownImageError(
        f"indexed image {image_id}: {path} is no longer a regular file in the collection (re-run `vistext index`)"
    )
    if not parts or not _NOFOLLOW or os.open not in os.supports_dir_fd:
        return _open_checked(path, refused)  # no openat (not POSIX): check the resolved path instead
    try:
        folder = os.open(base, os.O_RDONLY | _DIRECTORY)
    except OSError:
        raise refused from None
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=folder)
            os.close(folder)
            folder = inner
        fd = os.open(parts[-1], os.O_RDONLY | _NOFOLLOW | _NONBLOCK, dir_fd=folder)
    except OSError:  # ELOOP (a symlink), ENOTDIR, ENOENT, EACCES...
        raise refused from None
    finally:
        os.close(folder)
    return _describe(fd, path, refused)


def _open_checked(path: Path, refused: UnknownImageError) -> OpenFile:
    if path.resolve() != path:
        raise refused
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK)
    except OSError:
        raise refused from None
    return _describe(fd, path, refused)


def _describe(fd: int, path: Path, refused: UnknownImageError) -> OpenFile:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise refused
    if _NONBLOCK:
        os.set_blocking(fd, True)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {
        "content-length": str(info.st_size),
        "last-modified": formatdate(info.st_mtime, usegmt=True),
        "cache-control": "private, max-age=3600",
    }
    return OpenFile(fd, info.st_size, media_type, headers)
