"""Vector reads in the PostgreSQL store: nearest neighbours of a batch of queries, and a space streamed whole.

A batch of queries is one statement: the query vectors travel as one ``vector[]`` and a ``LATERAL`` subquery
per row scans the space's HNSW index (or, for a small space, every vector: exact), so N queries cost one round
trip. Hits are content hashes joined back to every ok image holding that content.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import psycopg
from psycopg import sql

from vistext.store.postgres.indexes import index_type, space_source
from vistext.store.postgres.leads import leads_of
from vistext.store.postgres.reads import space_join
from vistext.store.postgres.vectors import dump_vector, load_vector
from vistext.store.records import IMAGE_SPACE, VectorHit, l2_normalise

# exact search up to here: 16 queries over 2,000 899-d vectors took 56 ms exactly, 35 ms through the index
# (bench/pgvector_scale.py --small, 2 loaded cores); an index over 1,000 vectors builds in about a second
HNSW_THRESHOLD = 1_000
EF_SEARCH = 100
EF_MAX = 1000  # pgvector's ceiling: an HNSW scan returns at most ef_search rows
# a leads index walks for 1.6x ef_search candidates: at 1M synthetic fused rows, 100 of them found 0.942-0.965 of
# the top 10 in three builds, 160 found 0.970 at p50 6.1 ms (bench/pgvector_scale.py; docs/scaling.md)
LEAD_SLACK = 1.6


@dataclass(frozen=True)
class SearchPlan:
    """How to search one space: its dimension, k, exact or HNSW, the HNSW candidate list size, and the basis of
    the leads its index holds (None: the index holds the vectors themselves)."""

    space: str
    dim: int
    k: int
    exact: bool
    ef_search: int = EF_SEARCH
    basis: np.ndarray | None = field(default=None, compare=False)

    @property
    def candidates(self) -> int:
        """How many hits a walk of a leads index gathers for the float32 scores to rank: ``LEAD_SLACK`` times
        ``ef_search``, at least 2k, so the k best are among them (a walk in 160-224 dimensions costs less than
        one in 899)."""
        return min(max(round(self.ef_search * LEAD_SLACK), 2 * self.k), EF_MAX)


# "searched" read through the row as JSON: a catalogue older than v6 opened read-only has no such column yet
_SPACE_STATE = (
    "SELECT s.dim, s.hnsw, (to_jsonb(s) ->> 'searched') IS DISTINCT FROM 'false' FROM spaces s WHERE s.space = %s"
)


def space_dim(conn: psycopg.Connection, space: str) -> tuple[int | None, bool, bool]:
    """(dimension, whether its HNSW index is built, whether it is searched) of a space; (None, False, True)
    before its first vector."""
    row = conn.execute(_SPACE_STATE, (space,)).fetchone()
    return (int(row[0]), bool(row[1]), bool(row[2])) if row else (None, False, True)


def nearest(
    conn: psycopg.Connection,
    plan: SearchPlan,
    queries: np.ndarray,
    where: str,
    restrict: np.ndarray | None = None,
    *,
    settings: bool = True,
) -> list[list[VectorHit]]:
    """Up to ``plan.k`` hits per query row, best first (inside the caller's transaction); with ``restrict``, only
    among those image ids, searched exactly (the subset's own vectors, by primary key), so the answer holds
    ``min(k, subset)`` hits however few of the nearest neighbours the subset has."""
    vectors = [dump_vector(q) for q in queries]
    if restrict is not None:
        ids = np.asarray(restrict, dtype=np.int64).tolist()
        with conn.pipeline():  # the subset by primary key (a bitmap scan), never an approximate HNSW walk
            conn.execute("SET LOCAL enable_indexscan = off")
            cursor = conn.execute(_restricted_sql(plan, where), (vectors, ids), prepare=False)
        rows = cursor.fetchall()
    elif not settings:  # the caller checked that the planner's choice (a scan: no index) is right
        rows = conn.execute(_search_sql(plan, where, plan.exact), (vectors,), prepare=False).fetchall()
    else:
        exact = plan.exact or plan.k > EF_MAX
        ef_search = min(max(plan.ef_search, plan.k), EF_MAX) if plan.basis is None else plan.candidates
        leads = None if exact or plan.basis is None else leads_of(queries, plan.basis)
        params = (vectors,) if leads is None else (vectors, [dump_vector(lead) for lead in leads])
        with conn.pipeline():  # settings and query in one round trip
            # through the index: pgvector's cost model (ef_search rows per walk, the halfvec cast free) prefers a
            # scan and a sort below ~10k vectors, 10x slower than the walk (194 vs 15 ms for 16 queries over 2k)
            for setting in ["enable_indexscan"] if exact else ["enable_seqscan", "enable_bitmapscan", "enable_sort"]:
                conn.execute(sql.SQL("SET LOCAL {} = off").format(sql.Identifier(setting)))
            conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef_search)))
            cursor = conn.execute(_search_sql(plan, where, exact), params, prepare=False)
        rows = cursor.fetchall()
    hits: list[list[VectorHit]] = [[] for _ in queries]
    for number, image_id, path, distance in rows:
        row = hits[number - 1]
        if len(row) < plan.k:
            row.append(VectorHit(int(image_id), os.fsdecode(bytes(path)), 1.0 - float(distance)))
    return hits


def _search_sql(plan: SearchPlan, where: str, exact: bool) -> sql.Composed:
    """Exact: every vector's float32 distance. Through the index: the k nearest by the index's halfvec distance
    (the ORDER BY must be the index's expression), scored again in float32, as an exact search scores them; an
    index of leads gives its ``candidates`` nearest, of which the k nearest by that float32 score."""
    table, column, rows = space_source(plan.space)
    image = plan.space == IMAGE_SPACE
    leads = not exact and plan.basis is not None
    if exact:
        order = sql.SQL("v.{column} <=> q.vec").format(column=column)
    else:
        indexed, query = (sql.Identifier("lead"), sql.SQL("q.lead")) if leads else (column, sql.SQL("q.vec"))
        dim = plan.dim if plan.basis is None else len(plan.basis)
        order = sql.SQL("(v.{indexed}::{cast}) <=> ({query}::{cast})").format(
            indexed=indexed, query=query, cast=sql.SQL(index_type(dim, where, plan.space))
        )
    nearest = sql.SQL(
        "SELECT v.sha{model}, v.{column} <=> q.vec AS distance FROM {table} v WHERE {rows} ORDER BY {order} LIMIT {n}"
    ).format(
        model=sql.SQL(", v.model" if image else ""),
        column=column,
        table=table,
        rows=rows,
        order=order,
        n=sql.Literal(plan.candidates if leads else int(plan.k)),
    )
    if leads:  # the candidates ranked again by their float32 distance
        nearest = sql.SQL("SELECT c.* FROM ({}) c ORDER BY c.distance LIMIT {}").format(nearest, sql.Literal(plan.k))
    return sql.SQL(
        """SELECT q.n, i.id, i.path, h.distance
           FROM unnest(%s::vector[]{lead_array}) WITH ORDINALITY AS q(vec{lead_name}, n)
           CROSS JOIN LATERAL ({nearest}) h
           JOIN images i ON {match} AND i.status = 'ok'
           ORDER BY q.n, h.distance, i.id"""
    ).format(
        lead_array=sql.SQL(", %s::vector[]" if leads else ""),
        lead_name=sql.SQL(", lead" if leads else ""),
        nearest=nearest,
        match=sql.SQL("i.sha = h.sha AND i.model = h.model" if image else "i.sha = h.sha"),
    )


def _restricted_sql(plan: SearchPlan, where: str) -> sql.Composed:
    space = sql.SQL("") if plan.space == IMAGE_SPACE else sql.SQL(" AND v.space = {}").format(sql.Literal(plan.space))
    column = sql.SQL("v.pooled" if plan.space == IMAGE_SPACE else "v.vector")
    return sql.SQL(
        """SELECT q.n, h.id, h.path, h.distance
           FROM unnest(%s::vector[]) WITH ORDINALITY AS q(vec, n)
           CROSS JOIN LATERAL (
               SELECT i.id, i.path, {column} <=> q.vec AS distance
               FROM images i {join}{space} WHERE i.id = ANY(%s) AND i.status = 'ok'
               ORDER BY 3, i.id LIMIT {k}) h
           ORDER BY q.n, h.distance, h.id"""
    ).format(
        column=column,
        join=_join_literal(plan.space),
        space=space,
        k=sql.Literal(int(plan.k)),
    )


def _join_literal(space: str) -> sql.Composable:
    if space == IMAGE_SPACE:
        return sql.SQL("JOIN features v ON v.sha = i.sha AND v.model = i.model AND v.pooled IS NOT NULL")
    return sql.SQL("JOIN embeddings v ON v.sha = i.sha")


def stream_vectors(conn: psycopg.Connection, space: str, size: int, dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, L2-normalised vectors) of ``space`` by id, read with binary COPY straight into the result array.

    ``size`` comes from the same snapshot (the caller's REPEATABLE READ transaction)."""
    join, args = space_join(space)
    column = sql.SQL("v.pooled" if space == IMAGE_SPACE else "v.vector")
    ids = np.empty(size, dtype=np.int64)
    matrix = np.empty((size, dim or 0), dtype=np.float32)
    query = sql.SQL(
        "COPY (SELECT i.id, {column} FROM images i {join} WHERE i.status = 'ok' ORDER BY i.id) "
        "TO STDOUT (FORMAT BINARY)"
    ).format(column=column, join=join)
    with conn.cursor() as cursor, cursor.copy(query, args) as copy:
        copy.set_types(["int8", "bytea"])  # the vector's binary form, decoded below without a Python object
        for row_number, (image_id, payload) in enumerate(copy.rows()):
            ids[row_number] = image_id
            matrix[row_number] = load_vector(payload)
    return ids, l2_normalise(matrix) if size else matrix
