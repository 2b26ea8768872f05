"""Where vistext keeps things on disk: its home/cache directory and default database locations."""

from __future__ import annotations

import os
from pathlib import Path

DB_DIRNAME = ".vistext"
DB_FILENAME = "catalogue.sqlite"


def vistext_home() -> Path:
    """The cache/home directory: ``$VISTEXT_HOME`` or ``~/.cache/vistext``. Created on first use."""
    home = Path(os.environ.get("VISTEXT_HOME") or Path.home() / ".cache" / "vistext")
    home.mkdir(parents=True, exist_ok=True)
    return home


def cache_dir(*parts: str) -> Path:
    """A sub-directory of the home directory (e.g. ``cache_dir("onnx")``), created on first use."""
    path = vistext_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


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
