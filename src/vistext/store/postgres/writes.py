"""Writing a batch of records into the PostgreSQL catalogue: one transaction, idempotent upserts.

Upserts by path (``ON CONFLICT``), so a batch retried after it committed changes nothing; features and
embeddings by content hash. A batch is one pipelined round trip. New content (or a file that no longer reads)
drops the photo's metadata (in the upsert) and its tags; content no file uses any more is deleted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

import numpy as np
import psycopg

from vistext.store.postgres.leads import leads_of
from vistext.store.postgres.metadata import META_UPSERT, meta_values
from vistext.store.postgres.vectors import dump_vector
from vistext.store.records import IMAGE_SPACE, META_FIELDS, ImageRecord, to_blob

_COLUMNS = ", ".join(["path", "size", "mtime", "sha", "model", "status", "error", "indexed_at", *META_FIELDS])
_UPSERT_IMAGE = f"""INSERT INTO images ({_COLUMNS})
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, {", ".join(["%s"] * len(META_FIELDS))})
    ON CONFLICT (path) DO UPDATE SET {META_UPSERT}, size = excluded.size, mtime = excluded.mtime,
      sha = excluded.sha, model = excluded.model, status = excluded.status, error = excluded.error,
      indexed_at = excluded.indexed_at"""
_UPSERT_FEATURES = """INSERT INTO features (sha, model, pooled, logits, lead) VALUES (%s, %s, %s, %s, %s::halfvec)
    ON CONFLICT (sha, model) DO UPDATE SET pooled = coalesce(excluded.pooled, features.pooled),
      logits = coalesce(excluded.logits, features.logits),
      lead = CASE WHEN excluded.pooled IS NULL THEN features.lead ELSE excluded.lead END"""
_UPSERT_EMBEDDING = """INSERT INTO embeddings (sha, space, vector, lead) VALUES (%s, %s, %s, %s::halfvec)
    ON CONFLICT (sha, space) DO UPDATE SET vector = excluded.vector, lead = excluded.lead"""


def write_batch(
    conn: psycopg.Connection, records: Sequence[ImageRecord], bases: Mapping[str, np.ndarray | None]
) -> None:
    """Upsert ``records`` inside the caller's transaction (statuses already checked), each vector with its lead
    where its space's ``bases`` has a basis (``leads``)."""
    now = time.time()
    paths = [os.fsencode(r.path) for r in records]
    ok = [r for r in records if r.status == "ok"]
    features = [r for r in ok if r.pooled is not None or r.logits is not None]
    # one round trip for the whole batch (a pipeline): on a busy machine every wait for the server is slow
    with conn.pipeline(), conn.cursor(binary=True) as cursor:  # binary: vectors as pgvector's binary form
        old = conn.execute("SELECT path, sha, model, id FROM images WHERE path = ANY(%s)", (paths,))
        cursor.executemany(_UPSERT_IMAGE, [
            (path, int(r.size), float(r.mtime), r.sha, r.model, r.status, r.error, now, *meta_values(r.meta))
            for path, r in zip(paths, records, strict=True)
        ])  # fmt: skip
        pooled = [r.pooled for r in features]
        cursor.executemany(_UPSERT_FEATURES, [
            (r.sha, r.model, dump_vector(r.pooled), to_blob(r.logits), lead)
            for r, lead in zip(features, _leads(pooled, bases.get(IMAGE_SPACE)), strict=True)
        ])  # fmt: skip
        rows = [(r.sha, space, vector) for r in ok for space, vector in r.embeddings.items()]
        leads: list[np.ndarray | None] = [None] * len(rows)
        for space in {row[1] for row in rows}:  # one product per space
            places = [i for i, row in enumerate(rows) if row[1] == space]
            for i, lead in zip(places, _leads([rows[i][2] for i in places], bases.get(space)), strict=True):
                leads[i] = lead
        cursor.executemany(_UPSERT_EMBEDDING, [
            (sha, space, dump_vector(vector), lead) for (sha, space, vector), lead in zip(rows, leads, strict=True)
        ])  # fmt: skip
    before = {bytes(row[0]): row[1:] for row in old.fetchall()}
    drop_orphans(conn, {row[:2] for row in before.values()} - {(r.sha, r.model) for r in records})
    changed = [  # new content, or no longer readable: the photo's tags go (its metadata went above)
        before[path][2]
        for path, r in zip(paths, records, strict=True)
        if path in before and (before[path][0] != r.sha or r.status != "ok")
    ]
    if changed:
        conn.execute("DELETE FROM tags WHERE image_id = ANY(%s)", (changed,))
        conn.execute("DELETE FROM removed_tags WHERE image_id = ANY(%s)", (changed,))


def _leads(vectors: Sequence[np.ndarray | None], basis: np.ndarray | None) -> list[np.ndarray | None]:
    """Each vector's lead (None without a vector or a basis), made with one product."""
    leads: list[np.ndarray | None] = [None] * len(vectors)
    present = [i for i, vector in enumerate(vectors) if vector is not None]
    if basis is not None and present:
        made = leads_of(np.stack([np.asarray(vectors[i], np.float32).reshape(-1) for i in present]), basis)
        for i, lead in zip(present, made, strict=True):
            leads[i] = lead
    return leads


def drop_orphans(conn: psycopg.Connection, pairs: set[tuple[str, str]]) -> None:
    if not pairs:
        return
    shas, models = [p[0] for p in pairs], [p[1] for p in pairs]
    conn.execute(
        """DELETE FROM features f USING unnest(%s::text[], %s::text[]) AS o(sha, model)
           WHERE f.sha = o.sha AND f.model = o.model
             AND NOT EXISTS (SELECT 1 FROM images i WHERE i.sha = o.sha AND i.model = o.model)""",
        (shas, models),
    )
    conn.execute(
        """DELETE FROM embeddings e WHERE e.sha = ANY(%s)
             AND NOT EXISTS (SELECT 1 FROM images i WHERE i.sha = e.sha)""",
        (sorted(set(shas)),),
    )
    for table in ("picture_hashes", "photo_text"):  # keyed by content too: no photo left, no row
        conn.execute(
            f"""DELETE FROM {table} h WHERE h.sha = ANY(%s)
                 AND NOT EXISTS (SELECT 1 FROM images i WHERE i.sha = h.sha)""",
            (sorted(set(shas)),),
        )
