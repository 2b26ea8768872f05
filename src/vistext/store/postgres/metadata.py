"""Photo metadata (EXIF columns), filters, and collection tags in the PostgreSQL catalogue.

The same semantics as the SQLite catalogue's ``metadata`` module: metadata columns on ``images`` (NULL width:
never read), a ``tags`` table that goes with its image (``ON DELETE CASCADE``; new content drops it), and an
``ImageFilter`` turned into a WHERE clause (the ``near`` circle is checked exactly after a bounding box). Paths
are absolute here, so the collection's root (for relative folders and facets) is the deepest folder holding
every path: the common prefix of the smallest and largest path, two index lookups.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from vistext.store.locations import PathCodec, folder_prefix
from vistext.store.records import (
    EARTH_RADIUS_KM,
    MAX_FOLDERS,
    META_FIELDS,
    USER_TAGGER,
    ImageFilter,
    PhotoMeta,
    great_circle_km,
    meta_from_row,
)

META_COLUMNS = sql.SQL(", ").join(sql.Identifier("i", name) for name in META_FIELDS)
# on upsert: a record's meta when it has one, NULL when the content changed (or no longer reads), else kept
META_UPSERT = ", ".join(
    f"{name} = CASE WHEN excluded.width IS NOT NULL THEN excluded.{name} "
    f"WHEN images.sha <> excluded.sha OR excluded.status <> 'ok' THEN NULL ELSE images.{name} END"
    for name in META_FIELDS
)


def meta_values(meta: PhotoMeta | None) -> list[Any]:
    return [getattr(meta, name) if meta is not None else None for name in META_FIELDS]


def collection_root(conn: psycopg.Connection) -> str | None:
    """The deepest folder every stored path is under (None for an empty store)."""
    row = conn.execute("SELECT min(path), max(path) FROM images").fetchone()
    if row is None or row[0] is None:
        return None
    first, last = os.fsdecode(bytes(row[0])), os.fsdecode(bytes(row[1]))
    common = os.path.commonpath([os.path.dirname(first), os.path.dirname(last)])
    return common or None


def filter_where(conn: psycopg.Connection, filter: ImageFilter) -> tuple[sql.Composable, list[Any]]:
    """(WHERE clause over ``images i``, parameters) for ``filter``, the ``near`` circle as its bounding box."""
    clauses: list[sql.Composable] = [sql.SQL("i.status = 'ok'")]
    params: list[Any] = []
    if filter.after is not None:
        clauses.append(sql.SQL("i.taken_at >= %s"))
        params.append(float(filter.after))
    if filter.before is not None:
        clauses.append(sql.SQL("i.taken_at < %s"))
        params.append(float(filter.before))
    if filter.camera is not None:
        clauses.append(
            sql.SQL("strpos(lower(coalesce(i.camera_make, '') || ' ' || coalesce(i.camera_model, '')), %s) > 0")
        )
        params.append(filter.camera.strip().lower())
    if filter.near is not None:
        lat, lon, km = filter.near
        dlat = math.degrees(km / EARTH_RADIUS_KM)
        clauses.append(sql.SQL("i.latitude BETWEEN %s AND %s AND i.longitude IS NOT NULL"))
        params += [lat - dlat, lat + dlat]
        cos = math.cos(math.radians(min(89.9, abs(lat) + dlat)))
        dlon = math.degrees(km / (EARTH_RADIUS_KM * cos)) if cos > 0 else 180.0
        if dlon < 180 and -180 <= lon - dlon and lon + dlon <= 180:
            clauses.append(sql.SQL("i.longitude BETWEEN %s AND %s"))
            params += [lon - dlon, lon + dlon]
    if filter.folder is not None:
        root = collection_root(conn) or os.sep
        prefix = folder_prefix(PathCodec(Path(root)), filter.folder)  # relative to the root, or absolute elsewhere
        if prefix:
            absolute = prefix if os.path.isabs(prefix) else os.path.join(root, prefix)
            encoded = os.fsencode(absolute)
            clauses.append(sql.SQL("substr(i.path, 1, %s) = %s"))
            params += [len(encoded), encoded]
    if filter.tag is not None:
        clauses.append(sql.SQL("EXISTS (SELECT 1 FROM tags t WHERE t.image_id = i.id AND lower(t.tag) = lower(%s))"))
        params.append(filter.tag.strip())
    if filter.has_text is not None:
        found = "EXISTS (SELECT 1 FROM photo_text p WHERE p.sha = i.sha AND p.text != '')"
        clauses.append(sql.SQL(found if filter.has_text else f"NOT {found}"))
    return sql.SQL(" AND ").join(clauses), params


def matching_ids(conn: psycopg.Connection, filter: ImageFilter) -> np.ndarray:
    where, params = filter_where(conn, filter)
    if filter.near is None:
        rows = conn.execute(sql.SQL("SELECT i.id FROM images i WHERE {} ORDER BY i.id").format(where), params)
        return np.fromiter((row[0] for row in rows), dtype=np.int64)
    lat, lon, km = filter.near
    query = sql.SQL("SELECT i.id, i.latitude, i.longitude FROM images i WHERE {} ORDER BY i.id").format(where)
    rows = conn.execute(query, params)
    return np.fromiter((i for i, a, b in rows if great_circle_km(lat, lon, a, b) <= km), dtype=np.int64)


def text_matches(conn: psycopg.Connection, query: Sequence[str], limit: int) -> list[tuple[int, str, str]]:
    """(image id, path, its searchable words) of ok photos whose text holds a word starting with any of the ``query``
    words (the GIN-indexed tsvector), best-ranked (ts_rank) first, at most ``limit``."""
    if not query:
        return []
    wanted = " | ".join("'" + word.replace("'", "''").replace("\\", "\\\\") + "':*" for word in query)
    rows = conn.execute(
        "SELECT i.id, i.path, p.words FROM photo_text p JOIN images i ON i.sha = p.sha AND i.status = 'ok' "
        "WHERE p.terms @@ to_tsquery('simple', %s) "
        "ORDER BY ts_rank(p.terms, to_tsquery('simple', %s)) DESC, i.id LIMIT %s",
        (wanted, wanted, int(limit)),
    )
    return [(int(image_id), os.fsdecode(bytes(path)), str(text)) for image_id, path, text in rows]


def set_tags(conn: psycopg.Connection, tagger: str, tags: Mapping[int, Sequence[tuple[str, float]]]) -> None:
    ids = [int(i) for i in tags]
    conn.execute("DELETE FROM tags WHERE image_id = ANY(%s) AND tagger = %s", (ids, tagger))
    rows = [(int(i), str(tag), float(score)) for i, pairs in tags.items() for tag, score in pairs]
    if rows:
        conn.execute(
            """INSERT INTO tags (image_id, tag, score, tagger)
               SELECT t.image_id, t.tag, t.score, %s FROM unnest(%s::bigint[], %s::text[], %s::real[])
                 AS t(image_id, tag, score) JOIN images i ON i.id = t.image_id
               WHERE NOT EXISTS (SELECT 1 FROM removed_tags r WHERE r.image_id = t.image_id AND r.tag = lower(t.tag))
               ON CONFLICT (image_id, tagger, tag) DO UPDATE SET score = excluded.score""",
            (tagger, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
        )


def edit_tags(conn: psycopg.Connection, image_id: int, add: Sequence[str], remove: Sequence[str]) -> None:
    """Hand edits of one photo's tags (see ``Store.edit_tags``), each kind in one statement."""
    added, removed = list(add), [tag.lower() for tag in remove]
    conn.execute(
        "DELETE FROM removed_tags WHERE image_id = %s AND tag = ANY(%s)", (image_id, [t.lower() for t in added])
    )
    conn.execute(
        "INSERT INTO tags (image_id, tag, score, tagger) SELECT %s, t, 1.0, %s FROM unnest(%s::text[]) AS t "
        "ON CONFLICT (image_id, tagger, tag) DO UPDATE SET score = 1.0",
        (image_id, USER_TAGGER, added),
    )
    conn.execute("DELETE FROM tags WHERE image_id = %s AND lower(tag) = ANY(%s)", (image_id, removed))
    conn.execute(
        "INSERT INTO removed_tags (image_id, tag) SELECT %s, t FROM unnest(%s::text[]) AS t ON CONFLICT DO NOTHING",
        (image_id, removed),
    )


def photo_metas(conn: psycopg.Connection, ids: Iterable[int]) -> dict[int, PhotoMeta | None]:
    query = sql.SQL("SELECT i.id, {meta} FROM images i WHERE i.id = ANY(%s)").format(meta=META_COLUMNS)
    found: dict[int, PhotoMeta | None] = {}
    for row in conn.execute(query, ([int(i) for i in ids],)):
        found[int(row[0])] = meta_from_row(row[1:])
    return found


def tags_for(conn: psycopg.Connection, ids: Iterable[int]) -> dict[int, list[tuple[str, float]]]:
    found: dict[int, list[tuple[str, float]]] = {}
    rows = conn.execute(
        "SELECT image_id, tag, max(score) FROM tags WHERE image_id = ANY(%s) GROUP BY image_id, tag "
        "ORDER BY image_id, max(score) DESC, tag",
        ([int(i) for i in ids],),
    )
    for image_id, tag, score in rows:
        found.setdefault(int(image_id), []).append((tag, float(score)))
    return found


def tag_counts(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT t.tag, count(DISTINCT t.image_id) AS n FROM tags t JOIN images i ON i.id = t.image_id "
        "WHERE i.status = 'ok' GROUP BY t.tag ORDER BY n DESC, t.tag"
    )
    return {tag: int(n) for tag, n in rows}


def set_photo_meta(conn: psycopg.Connection, metas: Mapping[str, PhotoMeta]) -> None:
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in META_FIELDS)
    with conn.cursor() as cursor:
        cursor.executemany(
            sql.SQL("UPDATE images SET {} WHERE path = %s").format(assignments),
            [[*meta_values(meta), os.fsencode(path)] for path, meta in metas.items()],
        )


def facets(conn: psycopg.Connection) -> dict[str, Any]:
    root = collection_root(conn)
    folders: dict[str, int] = {}
    for (path,) in conn.execute("SELECT path FROM images WHERE status = 'ok'"):
        text = os.fsdecode(bytes(path))
        folder = os.path.dirname(os.path.relpath(text, root) if root else text) or "."
        folders[folder] = folders.get(folder, 0) + 1
    top = sorted(folders.items(), key=lambda item: (-item[1], item[0]))[:MAX_FOLDERS]
    rows = conn.execute(
        "SELECT trim(coalesce(camera_make, '') || ' ' || coalesce(camera_model, '')) AS camera, count(*) AS n "
        "FROM images WHERE status = 'ok' AND (camera_make IS NOT NULL OR camera_model IS NOT NULL) "
        "GROUP BY camera ORDER BY n DESC, camera"
    )
    cameras = {camera: int(n) for camera, n in rows}
    first, last, gps, read = conn.execute(
        "SELECT min(taken_at), max(taken_at), count(latitude), count(width) FROM images WHERE status = 'ok'"
    ).fetchone() or (None, None, 0, 0)
    return {
        "folders": dict(top),
        "cameras": cameras,
        "date_range": None if first is None else [float(first), float(last)],
        "has_gps": int(gps),
        "with_meta": int(read),
        "tags": tag_counts(conn),
    }
