"""Reading whole records (file row, features, embeddings) out of the PostgreSQL catalogue."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from vistext.store.pg_vectors import as_array
from vistext.store.records import IMAGE_SPACE, ImageRecord, from_blob


def space_join(space: str) -> tuple[sql.Composable, list[Any]]:
    """The join from ``images i`` to the rows holding ``space``'s vectors (as ``v``)."""
    if space == IMAGE_SPACE:
        return sql.SQL("JOIN features v ON v.sha = i.sha AND v.model = i.model AND v.pooled IS NOT NULL"), []
    return sql.SQL("JOIN embeddings v ON v.sha = i.sha AND v.space = %s"), [space]


def read_records(
    conn: psycopg.Connection, where: sql.Composable, params: Sequence[Any], limit: int | None = None
) -> list[ImageRecord]:
    """Records matching ``where`` (over ``images i``), by id, with their features and embeddings."""
    rows = conn.execute(
        sql.SQL(
            """SELECT i.id, i.path, i.size, i.mtime, i.sha, i.model, i.status, i.error, f.pooled, f.logits
               FROM images i LEFT JOIN features f ON f.sha = i.sha AND f.model = i.model AND i.status = 'ok'
               WHERE {} ORDER BY i.id {}"""
        ).format(where, sql.SQL("") if limit is None else sql.SQL("LIMIT {}").format(sql.Literal(int(limit)))),
        params,
    ).fetchall()
    ok_shas = sorted({row[4] for row in rows if row[6] == "ok"})
    embeddings: dict[str, dict[str, np.ndarray]] = {}
    if ok_shas:
        for sha, space, vector in conn.execute(
            "SELECT sha, space, vector FROM embeddings WHERE sha = ANY(%s) ORDER BY space", (ok_shas,)
        ):
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
        )
        for row in rows
    ]
