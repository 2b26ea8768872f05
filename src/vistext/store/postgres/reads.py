"""Reading whole records (file row, features, embeddings) out of the PostgreSQL catalogue."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from vistext.store.postgres.metadata import META_COLUMNS
from vistext.store.postgres.vectors import as_array
from vistext.store.records import IMAGE_SPACE, FileState, ImageRecord, from_blob, meta_from_row


def space_join(space: str) -> tuple[sql.Composable, list[Any]]:
    """The join from ``images i`` to the rows holding ``space``'s vectors (as ``v``)."""
    if space == IMAGE_SPACE:
        return sql.SQL("JOIN features v ON v.sha = i.sha AND v.model = i.model AND v.pooled IS NOT NULL"), []
    return sql.SQL("JOIN embeddings v ON v.sha = i.sha AND v.space = %s"), [space]


def read_records(
    conn: psycopg.Connection, where: sql.Composable, params: Sequence[Any], limit: int | None = None
) -> list[ImageRecord]:
    """Records matching ``where`` (over ``images i``), by id, with their features and embeddings."""
    limit_sql = sql.SQL("") if limit is None else sql.SQL("LIMIT {}").format(sql.Literal(int(limit)))
    # both queries in one round trip (the embeddings of the same rows, by a subquery), results in binary: a
    # vector as text is a thousand floats to parse, a bytea as text is hex
    with conn.pipeline(), conn.cursor(binary=True) as records, conn.cursor(binary=True) as vectors:
        records.execute(
            sql.SQL(
                """SELECT i.id, i.path, i.size, i.mtime, i.sha, i.model, i.status, i.error, f.pooled, f.logits, {meta}
                   FROM images i LEFT JOIN features f ON f.sha = i.sha AND f.model = i.model AND i.status = 'ok'
                   WHERE {where} ORDER BY i.id {limit}"""
            ).format(where=where, limit=limit_sql, meta=META_COLUMNS),
            params,
        )
        vectors.execute(
            sql.SQL(
                """SELECT e.sha, e.space, e.vector FROM embeddings e WHERE e.sha IN
                   (SELECT i.sha FROM images i WHERE ({where}) AND i.status = 'ok' ORDER BY i.id {limit})
                   ORDER BY e.space"""
            ).format(where=where, limit=limit_sql),
            params,
        )
        rows = records.fetchall()
        found = vectors.fetchall()
    embeddings: dict[str, dict[str, np.ndarray]] = {}
    for sha, space, vector in found:
        embeddings.setdefault(sha, {})[space] = as_array(vector)  # type: ignore[assignment]
    return [
        ImageRecord(
            id=int(row[0]),
            path=os.fsdecode(bytes(row[1])),
            size=int(row[2]),
            mtime=float(row[3]),
            sha=row[4],
            model=row[5],
            status=row[6],
            error=row[7],
            pooled=as_array(row[8]),
            logits=from_blob(bytes(row[9]) if row[9] is not None else None),
            embeddings=dict(embeddings.get(row[4], {})) if row[6] == "ok" else {},
            meta=meta_from_row(row[10:]),
        )
        for row in rows
    ]


def vectors_by_id(conn: psycopg.Connection, space: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
    """id -> the vector ``space`` holds for those of ``ids`` (ok photos) that have one, as stored: one query, a
    photo's other vectors and metadata left unread (what a composed search needs of its pool)."""
    join, params = space_join(space)
    column = sql.SQL("v.pooled" if space == IMAGE_SPACE else "v.vector")
    with conn.cursor(binary=True) as cursor:
        cursor.execute(
            sql.SQL("SELECT i.id, {} FROM images i {} WHERE i.status = 'ok' AND i.id = ANY(%s)").format(column, join),
            [*params, [int(i) for i in ids]],
        )
        return {int(row[0]): as_array(row[1]) for row in cursor if row[1] is not None}  # type: ignore[misc]


SPACES = sql.SQL(
    "SELECT s.space FROM spaces s WHERE s.space <> {} AND EXISTS (SELECT 1 FROM embeddings e WHERE e.space = s.space) "
    "ORDER BY s.space"
).format(sql.Literal(IMAGE_SPACE))  # the embedding spaces holding vectors now (an index lookup per space)
_SIZES = (
    "SELECT coalesce(sum(pg_table_size(c.oid)), 0), coalesce(sum(pg_indexes_size(c.oid)), 0) FROM pg_class c "
    "WHERE c.relname IN ('images', 'features', 'embeddings', 'meta', 'spaces', 'tags') AND c.relkind = 'r' "
    "AND c.relnamespace = to_regnamespace(current_schema())"
)


def catalogue_summary(conn: psycopg.Connection) -> dict[str, Any]:
    """Counts by status, ok images by model, and bytes in tables and indexes (HNSW included)."""
    counts: dict[str, int] = dict(conn.execute("SELECT status, count(*) FROM images GROUP BY status").fetchall())
    models: dict[str, int] = dict(
        conn.execute("SELECT model, count(*) FROM images WHERE status = 'ok' GROUP BY model").fetchall()
    )
    table_bytes, index_bytes = conn.execute(_SIZES).fetchone() or (0, 0)
    return {
        "count": sum(counts.values()),
        "ok": counts.get("ok", 0),
        "failed": counts.get("failed", 0),
        "models": models,
        "db_bytes": int(table_bytes),
        "index_bytes": int(index_bytes),
    }


def file_states(conn: psycopg.Connection, prefix: str | None) -> dict[str, FileState]:
    """Path -> file state of every file, or of those under ``prefix`` (a range scan of the path index)."""
    where, args = sql.SQL(""), list[bytes]()
    if prefix:
        low = os.fsencode(prefix)
        where, args = sql.SQL("WHERE path >= %s AND path < %s"), [low, _after_prefix(low)]
    rows = conn.execute(sql.SQL("SELECT path, size, mtime, sha, model, status FROM images {}").format(where), args)
    states = [FileState(os.fsdecode(bytes(row[0])), *row[1:]) for row in rows]
    return {state.path: state for state in states if not prefix or state.path.startswith(prefix)}


def _after_prefix(prefix: bytes) -> bytes:
    """The smallest byte string greater than every string starting with ``prefix`` (a range scan's end)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else b"\xff" * (len(prefix) + 1)
