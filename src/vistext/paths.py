"""Where vistext keeps things on disk: its home/cache directory and default database locations."""

from __future__ import annotations

import os
import tempfile
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


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Readers never see a half-written file, and when the write fails (a full disk, a read-only folder) the
    temporary file is removed and one ``StoreError`` line says what happened.
    """
    try:
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise StoreError(f"{path}: cannot write ({error.strerror or error})") from None
    try:
        with os.fdopen(handle, "wb") as out:
            view = memoryview(data)
            while view:
                view = view[os.write(out.fileno(), view) :]
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise StoreError(f"{path}: cannot write ({error.strerror or error})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
