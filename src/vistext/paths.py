"""Where vistext keeps things on disk: its home/cache directory, default database locations, and atomic writes."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vistext.errors import StoreError

DB_DIRNAME = ".vistext"
DB_FILENAME = "catalogue.sqlite"


def vistext_home() -> Path:
    """The cache/home directory: ``$VISTEXT_HOME`` or ``~/.cache/vistext``. Created on first use."""
    home = Path(os.environ.get("VISTEXT_HOME") or Path.home() / ".cache" / "vistext")
    _make_folder(home, "set VISTEXT_HOME to a writable folder")
    return home


def cache_dir(*parts: str) -> Path:
    """A sub-directory of the home directory (e.g. ``cache_dir("onnx")``), created on first use."""
    path = vistext_home().joinpath(*parts)
    _make_folder(path, "set VISTEXT_HOME to a writable folder")
    return path


def _make_folder(path: Path, hint: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(f"{path}: cannot create this folder ({error.strerror or error}); {hint}") from None


def default_db_path(indexed_dir: str | Path | None = None) -> Path:
    """The catalogue used when ``--db`` is not given.

    For ``vistext index DIR`` it is ``DIR/.vistext/catalogue.sqlite`` so the index travels with the photos.
    Commands that do not name a folder (``search``, ``similar``, ``info``...) look for ``./.vistext`` in the
    current directory and its parents, then fall back to ``$VISTEXT_HOME/default/catalogue.sqlite``.
    """
    if indexed_dir is not None:
        return Path(indexed_dir).resolve() / DB_DIRNAME / DB_FILENAME
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / DB_DIRNAME / DB_FILENAME
        if candidate.exists():
            return candidate
    return vistext_home() / "default" / DB_FILENAME


@contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (NumPy, ONNX, Pillow, FAISS, torch).

    The temporary file is ``.<name>.<random>.tmp<suffix>`` in the same directory (so the final rename is atomic
    and writers that pick a format from the extension still see it). When the block ends normally the file is
    flushed to disk (``fsync``; pass ``fsync=False`` for caches that are cheap to rebuild) and renamed over
    ``path``; when it raises, the temporary file is removed and ``path`` is left as it was. An ``OSError`` (a full
    disk, a read-only folder) becomes a one-line ``StoreError`` naming ``path``.
    """
    path = Path(path)
    # a random name rather than mkstemp: the writer creates the file, so it gets the usual permissions (not 0600)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp{path.suffix}")
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except OSError as error:  # a full disk, a read-only folder: one line that names the file
        tmp.unlink(missing_ok=True)
        raise StoreError(f"{path}: cannot write ({error.strerror or error})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes | str, *, encoding: str = "utf-8", fsync: bool = True) -> Path:
    """Write ``data`` (bytes, or text in ``encoding``) to ``path`` atomically: readers see the old file or the
    whole new one, never a part; a failed write leaves no temporary file behind."""
    path = Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else data
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(payload)
    return path


def _fsync(file: Path) -> None:
    descriptor = os.open(file, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; directories cannot be opened for fsync on Windows, where this is a no-op."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
