"""Where indexed images live: a catalogue of files and features plus vector indexes for search.

``open_store(uri)`` picks a backend by URI scheme (a bare path means ``sqlite``), so another backend can be
registered with ``register_backend`` without touching any caller; ``readonly=True`` opens a catalogue without
writing to it (what reading commands do). Here: ``base`` (the ``Store`` interface every caller sees),
``records`` (the values it hands out), ``locations`` (stored paths relative to a collection's root) and
``transfer`` (copying a store into another: ``vistext migrate``); one folder per backend beside them:
``sqlite/`` (the embedded default, with its FAISS index files) and ``postgres/`` (PostgreSQL + pgvector, and the
server ``vistext db start`` runs, behind the ``[postgres]`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vistext.errors import StoreError
from vistext.store.base import Store
from vistext.store.records import IMAGE_SPACE, FileState, ImageFilter, ImageRecord, PhotoMeta, VectorHit
from vistext.store.sqlite.catalogue import SCHEMA_VERSION
from vistext.store.sqlite.store import SQLiteStore

__all__ = [
    "IMAGE_SPACE",
    "SCHEMA_VERSION",
    "FileState",
    "ImageFilter",
    "ImageRecord",
    "PhotoMeta",
    "SQLiteStore",
    "Store",
    "VectorHit",
    "backends",
    "open_store",
    "register_backend",
]


# scheme -> constructor taking the location after "scheme://" plus backend options
def _postgres(location: str, **options: Any) -> Store:
    """The PostgreSQL + pgvector backend, imported only when used (the ``[postgres]`` extra)."""
    try:
        from vistext.store.postgres.store import PostgresStore
    except ImportError as error:
        raise StoreError(
            f"postgresql://{location}: the PostgreSQL backend needs the [postgres] extra "
            f"(pip install 'vistext[postgres]'): {error}"
        ) from None
    return PostgresStore(f"postgresql://{location}", **options)


_BACKENDS: dict[str, Callable[..., Store]] = {"sqlite": SQLiteStore, "postgresql": _postgres, "postgres": _postgres}


def register_backend(scheme: str, opener: Callable[..., Store]) -> None:
    """Make ``open_store("scheme://...")`` use ``opener(location, **options)``."""
    if scheme in _BACKENDS:
        raise StoreError(f"store backend {scheme!r} is registered twice")
    _BACKENDS[scheme] = opener


def backends() -> list[str]:
    """Known URI schemes, the embedded default first."""
    return ["sqlite", *sorted(set(_BACKENDS) - {"sqlite"})]


def open_store(uri: str | Path, **options: Any) -> Store:
    """Open (creating if needed) the store at ``uri``: a path or ``sqlite:///path`` for the embedded backend,
    ``postgresql://user@host:port/database`` for a PostgreSQL server with pgvector."""
    text = str(uri)
    scheme, location = text.split("://", 1) if "://" in text else ("sqlite", text)
    opener = _BACKENDS.get(scheme)
    if opener is None:
        raise StoreError(f"{text}: unknown store backend {scheme!r}; known: {', '.join(backends())}")
    if not location:
        raise StoreError(f"{text}: no location given after {scheme}://")
    return opener(location, **options)
