"""Where a catalogue lives: the one owner of "folder / ``--db`` / URI -> catalogue".

``locate(db, folder)`` answers it for every caller (the collection, the Ray workers, ``vistext migrate``, the
server's file checks), so no two of them can disagree about which file or server a command reads or writes.
Also here: the indexed folders below the current one (so a run from a parent folder can name them instead of
saying only "no index here").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vistext.paths import DB_DIRNAME, DB_FILENAME, cache_dir, default_db_path

SCAN_DEPTH = 3  # how many folder levels below the current one are searched for indexes when none is found
SCAN_FOLDERS = 2000  # and at most this many folders, so a run from / or $HOME answers at once


@dataclass(frozen=True)
class CatalogueLocation:
    """One catalogue's place: ``uri`` is what the store opens (a server's URL, or the SQLite file); ``file`` is
    the SQLite file (for a server, a file name in a local folder that holds its caches: topics, maps)."""

    uri: str
    remote: bool

    def __str__(self) -> str:
        return self.uri

    @property
    def file(self) -> Path:
        if not self.remote:
            return Path(self.uri)
        where = urlsplit(self.uri)
        place = f"{where.hostname}_{where.port}{where.path}"  # no user or password in a folder name
        return cache_dir("servers", re.sub(r"[^A-Za-z0-9._-]+", "_", place)) / DB_FILENAME

    @property
    def cache_folder(self) -> Path:
        """Where computed views of the collection (topics, maps) are kept: beside the catalogue."""
        return self.file.parent

    @property
    def collection_folder(self) -> Path | None:
        """The folder the catalogue belongs to (``DIR`` of ``DIR/.vistext/catalogue.sqlite``), if it has one."""
        if self.remote or self.file.parent.name != DB_DIRNAME:
            return None
        return self.file.parent.parent.resolve()

    def exists(self) -> bool:
        """Whether there is a catalogue here already (a server is asked only when it is opened)."""
        return self.remote or self.file.exists()

    def for_workers(self) -> str:
        """The ``uri`` as other processes and machines must be given it: a SQLite file by its absolute path."""
        return self.uri if self.remote else str(self.file.resolve())


def is_server_uri(db: str | Path) -> bool:
    """Whether ``db`` names a store server (``postgresql://...``) rather than a SQLite catalogue."""
    text = str(db)
    return "://" in text and not text.startswith("sqlite://")


def locate(db: str | Path | None, folder: str | Path | None = None) -> CatalogueLocation:
    """The catalogue a command works on: ``db`` (a store URL, ``sqlite:///path``, a catalogue file, an indexed
    folder or its ``.vistext/``) when given; else the one of ``folder`` being indexed (``folder/.vistext/``);
    else the default one (``vistext.paths.default_db_path``: ``./.vistext`` here or above, then the home's)."""
    if db is None:
        return CatalogueLocation(str(default_db_path(folder)), False)
    text = str(db)
    if is_server_uri(text):
        return CatalogueLocation(text, True)
    return CatalogueLocation(str(catalogue_file(Path(text.split("://", 1)[1]) if "://" in text else Path(text))), False)


def missing_message(path: Path, db_given: bool) -> str:
    """Why there is no catalogue at ``path``: without --db (``db_given``), name the indexed folders below here."""
    below = [] if db_given else indexes_below(Path.cwd())
    if not below:
        return f"{path}: no index here yet; run `vistext index DIR` first (or pass --db)"
    shown = ", ".join(str(folder) for folder in below[:5]) + (f" and {len(below) - 5} more" if len(below) > 5 else "")
    return (
        f"no index in {Path.cwd()} or the folders above it; indexed folders below it: {shown}; "
        f"pass one with --db (e.g. --db {below[0]})"
    )


def catalogue_file(path: Path) -> Path:
    """The catalogue a ``--db`` names: the file itself, or the indexed folder (holding ``.vistext/``), or
    ``.vistext/`` itself."""
    if path.is_dir():
        return path / DB_FILENAME if path.name == DB_DIRNAME else path / DB_DIRNAME / DB_FILENAME
    return path


def indexes_below(root: Path, depth: int = SCAN_DEPTH, budget: int = SCAN_FOLDERS) -> list[Path]:
    """Indexed folders (holding ``.vistext/catalogue.sqlite``) up to ``depth`` levels below ``root``, relative
    to it; hidden folders and symlinks are not entered and at most ``budget`` folders are listed."""
    found: list[Path] = []
    level = [root]
    for _ in range(depth):
        following: list[Path] = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                budget -= 1
                if budget < 0:
                    return found
                child = Path(entry.path)
                if (child / DB_DIRNAME / DB_FILENAME).is_file():
                    found.append(child.relative_to(root))
                following.append(child)
        level = following
    return found
