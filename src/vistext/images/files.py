"""A user's photo files: finding them in a folder tree, the one door to open them, and reading one consistently.

``open_regular`` is the only way vistext opens a user's file (see the package docstring for the rule).
``PhotoFile`` is a photo opened once: its header is checked, its bytes hashed, and its size and mtime taken
from that same open file, which the decoder and the metadata reader then read again (``reader()``); a change in place in
the meantime is caught (size, mtime and ctime of the open file compared) and the file read again, so what is
stored for a photo always comes from the bytes that were hashed. A file replaced by name (``os.replace``,
an editor's save) does not disturb it: the open file still holds the version that was hashed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from PIL import Image

from vistext.errors import ImageDecodeError

try:  # HEIC/HEIF photos from phones; optional so the package still works without it
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is optional
    pass

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
)
# The Pillow plugins tried, whatever a file is named: a DDS texture or a PSD called .png is "not an image file"
# (MPO camera photos are opened by the JPEG plugin).
FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF")
NOT_AN_IMAGE = "not an image file (or not a supported format)"

_HASH_CHUNK = 1 << 20
_HEAD = 16  # what Image.open hands each plugin's accept() to identify a file
CHANGE_TRIES = 3  # reads of a file that keeps changing in place before it is given up for this run


# ---- opening ---------------------------------------------------------------------------------------------------
def open_regular(path: str | Path) -> IO[bytes]:
    """Open a user's file for reading only if it is a regular file (after symlinks); never blocks on a FIFO.

    The one door for reading a user's file: every open of a photo, by any command, goes through here.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except PermissionError:
        raise ImageDecodeError(path, "permission denied") from None
    except OSError as error:
        raise ImageDecodeError(path, f"cannot read file ({error.strerror or error})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ImageDecodeError(path, f"{not_regular_reason(mode)}, not an image file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def not_regular_reason(mode: int) -> str:
    """What a non-regular file is, in words ("is a directory", "is a FIFO (named pipe)", ...)."""
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is not a regular file"


def is_image_header(head: bytes) -> bool:
    """Whether a file's first bytes are those of a format in ``FORMATS``, asked of Pillow's own plugins (as
    ``Image.open`` identifies a file), so a file that is no image is refused before anything reads the rest."""
    Image.init()
    for name in FORMATS:
        accept = Image.OPEN.get(name, (None, None))[1]
        verdict = accept(head) if accept is not None else False
        if verdict and not isinstance(verdict, str):  # a str means "recognised, but support is missing"
            return True
    return False


# ---- one photo, read once -------------------------------------------------------------------------------------
class PhotoFile:
    """A user's photo opened once (through ``open_regular``) and hashed: ``sha``, ``size`` and ``mtime`` describe
    the bytes of this open file, and ``decode_image(photo)`` / ``read_photo_meta(photo)`` read those same bytes.

    Use as a context manager, or ``close()`` it. Raises ``ImageDecodeError`` when the file cannot be opened, is
    empty, does not start like an image (checked before the rest is read: a 2 GB non-image is not hashed), or
    keeps changing while it is read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._handle = open_regular(path)
        self._info = os.fstat(self._handle.fileno())
        self.sha = ""
        try:
            self.rehash()
        except BaseException:
            self._handle.close()
            raise

    @property
    def size(self) -> int:
        return self._info.st_size

    @property
    def mtime(self) -> float:
        return self._info.st_mtime

    def reader(self) -> IO[bytes]:
        """A new reader of the open file, at its start, for one reader at a time; close it when done (closing it
        leaves the photo open: Pillow closes the file it was given when its image is closed)."""
        reader = os.fdopen(os.dup(self._handle.fileno()), "rb")
        reader.seek(0)
        return reader

    def unchanged(self) -> bool:
        """Whether the open file still holds the bytes that were hashed (nothing wrote to it since)."""
        return _same_version(self._info, os.fstat(self._handle.fileno()))

    def rehash(self) -> None:
        """Check the header and hash the file from its start; again while it changes under the read."""
        for _ in range(CHANGE_TRIES):
            before = os.fstat(self._handle.fileno())
            self.sha = self._hash(before.st_size)
            if _same_version(before, os.fstat(self._handle.fileno())):
                self._info = before
                return
        raise ImageDecodeError(self.path, f"the file kept changing while it was read ({CHANGE_TRIES} tries)")

    def _hash(self, size: int) -> str:
        if size == 0:
            raise ImageDecodeError(self.path, "empty file (0 bytes)")
        try:
            with self.reader() as reader:
                if not is_image_header(reader.read(_HEAD)):
                    raise ImageDecodeError(self.path, NOT_AN_IMAGE)
                reader.seek(0)
                return hash_stream(reader, size)
        except OSError as error:
            raise ImageDecodeError(self.path, f"cannot read file ({error.strerror or error})") from None

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> PhotoFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PhotoFile({self.path!r}, sha={self.sha!r})"


def _same_version(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (
        after.st_size,
        after.st_mtime_ns,
        after.st_ctime_ns,
    )


def hash_stream(handle: IO[bytes], size: int) -> str:
    """The blake2b hash (hex) of the next ``size`` bytes of ``handle``, read in chunks (never past ``size``)."""
    digest = hashlib.blake2b(digest_size=20)
    left = size
    while left > 0 and (chunk := handle.read(min(_HASH_CHUNK, left))):
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def file_hash(path: str | Path) -> str:
    """The blake2b content hash of a regular file (hex), read in chunks and never past the size ``stat`` gave."""
    with open_regular(Path(path)) as handle:
        try:
            return hash_stream(handle, os.fstat(handle.fileno()).st_size)
        except OSError as error:
            raise ImageDecodeError(path, f"cannot read file ({error.strerror or error})") from None


# ---- folders ---------------------------------------------------------------------------------------------------
Unreadable = Callable[[Path, str], None]


def iter_image_files(folder: str | Path, unreadable: Unreadable | None = None) -> Iterator[Path]:
    """Image files under ``folder`` (by suffix), skipping hidden files and folders: a folder's files first,
    sorted, then each sub-folder's, sorted. Any depth (no recursion); links to folders are not followed (no
    loops); a folder that cannot be listed is passed to ``unreadable(folder, reason)`` and skipped."""
    stack = [Path(folder)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as scan:
                entries = sorted(
                    (entry.name, kind) for entry in scan if (kind := _kind(entry)) and entry.name[0] != "."
                )
        except OSError as error:
            if unreadable is not None:
                unreadable(current, _listing_error(error))
            continue
        for name, kind in entries:
            if kind == "file" and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                yield current / name
        stack.extend(current / name for name, kind in reversed(entries) if kind == "folder")


def _kind(entry: os.DirEntry[str]) -> str:
    """What the walk makes of an entry: "folder" (a real one), "file" (anything else, links to files
    included) or "" (a link to a folder, not followed)."""
    try:
        if entry.is_dir():
            return "" if entry.is_symlink() else "folder"
    except OSError:
        pass
    return "file"


def _listing_error(error: OSError) -> str:
    if error.errno in (errno.EACCES, errno.EPERM):
        return "cannot list this folder (permission denied): its photos are left as they were"
    if error.errno == errno.ENAMETOOLONG:
        return "cannot list this folder (its path is too long): its photos are left as they were"
    return f"cannot list this folder ({error.strerror or error}): its photos are left as they were"
