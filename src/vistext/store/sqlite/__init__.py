"""The embedded default backend: a SQLite catalogue (the truth) plus FAISS index files beside it (caches).

``store`` is the backend (``SQLiteStore``); ``catalogue`` the SQLite file (``connection`` opens it writable or
read-only, ``schema`` migrates it, ``metadata`` and ``space_vectors`` query it); ``vectors`` is the FAISS index of
one space and ``index_files`` keeps those indexes on disk, verified against the catalogue.
"""

from __future__ import annotations

from vistext.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
