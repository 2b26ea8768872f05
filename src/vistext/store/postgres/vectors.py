"""pgvector values on the wire: numpy arrays in, pgvector's binary form (big-endian float32) out."""

from __future__ import annotations

import numpy as np
import psycopg
from pgvector.psycopg import register_vector


def register_vectors(conn: psycopg.Connection, ef_search: int | None = None) -> None:
    """Teach a new pooled connection the ``vector`` type (numpy arrays dump as vectors) and, when given, the
    store's HNSW candidate list size (``hnsw.ef_search``) for its whole session."""
    register_vector(conn)
    if ef_search is not None:
        conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
    conn.commit()  # the type lookup opened a transaction: a pooled connection must come back idle


def dump_vector(vector: np.ndarray | None) -> np.ndarray | None:
    """A parameter pgvector's dumper sends as ``vector``: float32, one row."""
    if vector is None:
        return None
    return np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)


def load_vector(payload: bytes | bytearray | memoryview) -> np.ndarray:
    """pgvector's binary form (int16 dim, int16 unused, dim big-endian float32) as a float32 array."""
    return np.frombuffer(payload, dtype=">f4", offset=4).astype(np.float32)


def as_array(value: object) -> np.ndarray | None:
    """A loaded ``vector`` column value (pgvector's ``Vector``) as a float32 array."""
    if value is None:
        return None
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy else value, dtype=np.float32).copy()
