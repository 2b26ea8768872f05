"""Where catalogues are on disk: the file a ``--db`` names, and the indexed folders below the current one (so a
run from a parent folder can name them instead of saying only "no index here")."""

from __future__ import annotations

import os
from pathlib import Path

from vistext.paths import DB_DIRNAME, DB_FILENAME

SCAN_DEPTH = 3  # how many folder levels below the current one are searched for indexes when none is found
SCAN_FOLDERS = 2000  # and at most this many folders, so a run from / or $HOME answers at once


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
