"""Each searched space's ANN index in the PostgreSQL catalogue: its type, its name, and building it in bulk.

A space's vectors stay float32 in the table (what ``get`` and ``migrate`` hand back, bit for bit); its index is
an HNSW graph (cosine) over their leads (``leads``: their coordinates along the space's leading directions, where
a few directions hold nearly all of them) or else over the vectors themselves, cast to ``halfvec(d)``: 16-bit
floats, half the bytes of float32 and half the memory a build needs, which pgvector indexes up to 4,000
dimensions. Queries that use the index cast the same way; the hits they find are scored again in float32.

``build_index`` builds the graph over the rows a space already holds (pgvector builds many times faster than
it grows the graph a row at a time), with ``maintenance_work_mem`` sized to the graph it is about to build
(``build_memory``: rows x (2 bytes per dimension + its neighbour lists)), so the graph stays in memory (a
build that spills is several times slower), and with parallel workers. Only searched spaces get one: a space
read whole but never searched by nearest neighbour (a derived space's source) is marked ``searched = false``.
"""

from __future__ import annotations

import hashlib
import os

import psycopg
from psycopg import sql

from vistext.errors import StoreError
from vistext.store.records import IMAGE_SPACE

INDEX_LIMIT = 4000  # pgvector indexes halfvec up to 4,000 dimensions
HNSW_M = 16
EF_CONSTRUCTION = 64
MIN_BUILD_MEMORY = 64 << 20
MAX_BUILD_MEMORY = 8 << 30  # the most a build asks for unless VISTEXT_PG_BUILD_MEMORY says otherwise
_UNITS = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}
_ELEMENT_BYTES = 160  # pgvector's per-element overhead in a build (element, tuple header, level lists)
_NEIGHBOUR_BYTES = 16  # one candidate in a neighbour list (pointer, distance, flag)


def index_type(dim: int, where: str, space: str) -> str:
    """The type a space's index (and the queries using it) casts vectors to."""
    if dim <= INDEX_LIMIT:
        return f"halfvec({int(dim)})"
    raise StoreError(
        f"{where}: space {space!r} has {dim}-d vectors; pgvector indexes at most {INDEX_LIMIT} "
        "dimensions (halfvec): reduce them or use the sqlite backend"
    )


def space_source(space: str) -> tuple[sql.Composable, sql.Composable, sql.Composable]:
    """(table, vector column, row filter) holding the vectors of ``space``."""
    if space == IMAGE_SPACE:
        return sql.Identifier("features"), sql.Identifier("pooled"), sql.SQL("pooled IS NOT NULL")
    return sql.Identifier("embeddings"), sql.Identifier("vector"), sql.SQL("space = {}").format(sql.Literal(space))


def index_name(space: str) -> str:
    return "hnsw_" + hashlib.sha1(space.encode()).hexdigest()[:16]


def memory_limit() -> int:
    """The most one index build may ask of the server: ``VISTEXT_PG_BUILD_MEMORY`` ("32GB", "512MB"), else 8 GB.
    A graph larger than this is built anyway, spilling to disk, several times slower (pgvector says so in the
    server's log)."""
    return size_from_environment("VISTEXT_PG_BUILD_MEMORY", MAX_BUILD_MEMORY)


def size_from_environment(variable: str, default: int) -> int:
    """Bytes given by the environment ``variable`` ("32GB", "512MB", "1048576"), else ``default``; at least
    64 MiB. A value that is not a size is a one-line ``StoreError``."""
    text = os.environ.get(variable, "").strip().lower().replace(" ", "")
    if not text:
        return default
    unit = _UNITS.get(text[-2:], 1)
    number = text[:-2] if text[-2:] in _UNITS else text
    try:
        return max(MIN_BUILD_MEMORY, int(float(number) * unit))
    except ValueError:
        raise StoreError(f"{variable}={text!r}: not a size such as 32GB or 512MB") from None


def build_memory(rows: int, dim: int, m: int = HNSW_M, limit: int = MAX_BUILD_MEMORY) -> int:
    """Bytes of ``maintenance_work_mem`` an HNSW build of ``rows`` ``dim``-d halfvecs needs to stay in memory:
    each element holds its vector (2 bytes a dimension) and 2m neighbours on layer 0 (upper layers add ~1/m
    more), plus a tenth for the allocator; at least 64 MiB, at most ``limit``."""
    per_row = 2 * dim + 8 + _ELEMENT_BYTES + _NEIGHBOUR_BYTES * (2 * m + 1)
    return max(MIN_BUILD_MEMORY, min(limit, int(rows * per_row * 1.1)))


def build_workers() -> int:
    """Parallel maintenance workers for a build: every core but the leader's (the server caps it at its own
    ``max_parallel_maintenance_workers`` ceiling, ``max_worker_processes``)."""
    return max(0, min(7, (os.cpu_count() or 1) - 1))


def build_index(
    conn: psycopg.Connection,
    space: str,
    where: str,
    *,
    m: int = HNSW_M,
    ef_construction: int = EF_CONSTRUCTION,
    memory_limit: int = MAX_BUILD_MEMORY,
) -> None:
    """Build ``space``'s HNSW index over the vectors it holds (inside the caller's transaction); later rows join
    it as they are written. Runs once, whoever comes first; a space that is not searched gets none."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (space,))
    row = conn.execute("SELECT dim, hnsw, searched, lead_dims FROM spaces WHERE space = %s", (space,)).fetchone()
    if row is None or row[1] or not row[2]:
        return
    dim = int(row[3] or row[0])  # over the leading directions where ``leads`` chose them, else the whole vector
    cast = index_type(dim, where, space)
    table, column, where_rows = space_source(space)
    column = sql.Identifier("lead") if row[3] else column
    counted = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table, where_rows)).fetchone()
    rows = int((counted or (0,))[0])
    memory = build_memory(rows, dim, m, memory_limit)
    conn.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(f"{memory // 1024}kB")))
    conn.execute(sql.SQL("SET LOCAL max_parallel_maintenance_workers = {}").format(sql.Literal(build_workers())))
    conn.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw (({column}::{cast}) halfvec_cosine_ops) "
            "WITH (m = {m}, ef_construction = {efc}) WHERE {rows}"
        ).format(
            name=sql.Identifier(index_name(space)),
            table=table,
            column=column,
            cast=sql.SQL(cast),
            m=sql.Literal(int(m)),
            efc=sql.Literal(int(ef_construction)),
            rows=where_rows,
        )
    )
    # fresh statistics: with a new table's (a few rows) the planner sorts a scan instead of walking the graph
    conn.execute(sql.SQL("ANALYZE images, {}").format(table))
    conn.execute("UPDATE spaces SET hnsw = true WHERE space = %s", (space,))


def drop_index(conn: psycopg.Connection, space: str) -> None:
    """Drop ``space``'s HNSW index (searches are exact until it is built again)."""
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(index_name(space))))
    conn.execute("UPDATE spaces SET hnsw = false WHERE space = %s", (space,))
