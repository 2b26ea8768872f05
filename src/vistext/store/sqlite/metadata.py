"""The catalogue's per-photo metadata (EXIF columns, schema v4) and collection tags (schema v5) in SQL.

Functions over an open catalogue connection and its ``PathCodec``, used by ``Catalogue``: writing and reading
the metadata columns, the SQL of an ``ImageFilter``, stored tags, and the facets a filter UI offers.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vistext.store.locations import PathCodec, folder_prefix
from vistext.store.records import (
    EARTH_RADIUS_KM,
    MAX_FOLDERS,
    META_FIELDS,
    USER_TAGGER,
    ImageFilter,
    ImageRecord,
    PhotoMeta,
    great_circle_km,
    meta_from_row,
)

_CHUNK = 500
META_SELECT = ", ".join(f"i.{name}" for name in META_FIELDS)


def write_meta(conn: sqlite3.Connection, stored_path: str | bytes, meta: PhotoMeta | None) -> None:
    """Set (or with None, clear) the metadata columns of the row with this stored path."""
    values = [getattr(meta, name) if meta is not None else None for name in META_FIELDS]
    assignments = ", ".join(f"{name} = ?" for name in META_FIELDS)
    conn.execute(f"UPDATE images SET {assignments} WHERE path = ?", [*values, stored_path])


def upserted(
    conn: sqlite3.Connection,
    record: ImageRecord,
    stored: str | bytes,
    old: Sequence[Any] | None,
    *,
    has_meta: bool,
    has_tags: bool,
) -> None:
    """After ``record`` was upserted over ``old`` (its previous sha, model, id, or None): new content or a
    failed read drops the row's metadata and tags; ``record.meta`` is stored when given (None keeps it)."""
    if old is not None and (old[0] != record.sha or record.status != "ok"):
        if has_meta:
            write_meta(conn, stored, None)
        if has_tags:
            drop_tags(conn, [old[2]])
    if record.meta is not None and has_meta:
        write_meta(conn, stored, record.meta)


def paths_without_meta(conn: sqlite3.Connection, codec: PathCodec) -> set[str]:
    rows = conn.execute("SELECT path FROM images WHERE status = 'ok' AND width IS NULL")
    return {codec.decode(row[0]) for row in rows}


# ---- filters ---------------------------------------------------------------------------------------------------
def filter_sql(filter: ImageFilter, codec: PathCodec, *, has_tags: bool, has_text: bool) -> tuple[str, list[Any]]:
    """(WHERE clause over ``images i``, parameters) for everything in ``filter`` except the exact ``near``
    distance (a bounding box here; ``matching_ids`` checks the circle)."""
    clauses: list[str] = ["i.status = 'ok'"]
    params: list[Any] = []
    if filter.after is not None:
        clauses.append("i.taken_at >= ?")
        params.append(float(filter.after))
    if filter.before is not None:
        clauses.append("i.taken_at < ?")
        params.append(float(filter.before))
    if filter.camera is not None:
        clauses.append("instr(lower(coalesce(i.camera_make, '') || ' ' || coalesce(i.camera_model, '')), ?) > 0")
        params.append(filter.camera.strip().lower())
    if filter.near is not None:
        lat, lon, km = filter.near
        dlat = math.degrees(km / EARTH_RADIUS_KM)
        clauses.append("i.latitude BETWEEN ? AND ? AND i.longitude IS NOT NULL")
        params += [lat - dlat, lat + dlat]
        cos = math.cos(math.radians(min(89.9, abs(lat) + dlat)))
        dlon = math.degrees(km / (EARTH_RADIUS_KM * cos)) if cos > 0 else 180.0
        if dlon < 180 and -180 <= lon - dlon and lon + dlon <= 180:  # a box that does not cross the antimeridian
            clauses.append("i.longitude BETWEEN ? AND ?")
            params += [lon - dlon, lon + dlon]
    if filter.folder is not None:
        prefix = folder_prefix(codec, filter.folder)
        if prefix:
            clauses.append("typeof(i.path) = 'text' AND substr(i.path, 1, ?) = ?")
            params += [len(prefix), prefix]
    if filter.tag is not None:
        if not has_tags:
            clauses.append("0")
        else:
            clauses.append("EXISTS (SELECT 1 FROM tags t WHERE t.image_id = i.id AND t.tag = ? COLLATE NOCASE)")
            params.append(filter.tag.strip())
    if filter.has_text is not None:
        found = "EXISTS (SELECT 1 FROM photo_text p WHERE p.sha = i.sha AND p.text != '')" if has_text else "0"
        clauses.append(found if filter.has_text else f"NOT {found}")
    return " AND ".join(clauses), params


def matching_ids(
    conn: sqlite3.Connection, codec: PathCodec, filter: ImageFilter, *, has_meta: bool, has_tags: bool, has_text: bool
) -> np.ndarray:
    """Sorted ids of ok images passing ``filter`` (a catalogue without metadata passes only metadata-free
    filters)."""
    uses_meta = any(v is not None for v in (filter.after, filter.before, filter.camera, filter.near))
    if uses_meta and not has_meta:
        return np.empty(0, np.int64)
    where, params = filter_sql(filter, codec, has_tags=has_tags, has_text=has_text)
    if filter.near is None:
        rows = conn.execute(f"SELECT i.id FROM images i WHERE {where} ORDER BY i.id", params)
        return np.fromiter((row[0] for row in rows), dtype=np.int64)
    lat, lon, km = filter.near
    rows = conn.execute(f"SELECT i.id, i.latitude, i.longitude FROM images i WHERE {where} ORDER BY i.id", params)
    return np.fromiter((i for i, a, b in rows if great_circle_km(lat, lon, a, b) <= km), dtype=np.int64)


# ---- tags ------------------------------------------------------------------------------------------------------
def set_tags(conn: sqlite3.Connection, tagger: str, tags: Mapping[int, Sequence[tuple[str, float]]]) -> None:
    """Replace ``tagger``'s tags of each image id in ``tags`` (an empty list clears them); unknown ids are
    skipped, and so are tags removed from a photo by hand."""
    for image_id, pairs in tags.items():
        conn.execute("DELETE FROM tags WHERE image_id = ? AND tagger = ?", (int(image_id), tagger))
        known = conn.execute("SELECT 1 FROM images WHERE id = ?", (int(image_id),)).fetchone()
        if known is None:
            continue
        removed = {row[0] for row in conn.execute("SELECT tag FROM removed_tags WHERE image_id = ?", (int(image_id),))}
        pairs = [(tag, score) for tag, score in pairs if str(tag).lower() not in removed]
        conn.executemany(
            "INSERT INTO tags (image_id, tag, score, tagger) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (image_id, tagger, tag) DO UPDATE SET score = excluded.score",
            [(int(image_id), str(tag), float(score), tagger) for tag, score in pairs],
        )


def photo_metas(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, PhotoMeta | None]:
    """Image id -> its metadata columns (None: never read); only those columns are read."""
    wanted = [int(i) for i in ids]
    found: dict[int, PhotoMeta | None] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        query = f"SELECT i.id, {META_SELECT} FROM images i WHERE i.id IN ({','.join('?' * len(chunk))})"
        for row in conn.execute(query, chunk):
            found[int(row[0])] = meta_from_row(row[1:])
    return found


def tags_for(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, list[tuple[str, float]]]:
    """Image id -> its stored (tag, score) pairs, best first (ids without tags are left out)."""
    wanted = [int(i) for i in ids]
    found: dict[int, list[tuple[str, float]]] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = conn.execute(
            f"SELECT image_id, tag, max(score) FROM tags WHERE image_id IN ({','.join('?' * len(chunk))}) "
            "GROUP BY image_id, tag ORDER BY image_id, max(score) DESC, tag",
            chunk,
        )
        for image_id, tag, score in rows:
            found.setdefault(int(image_id), []).append((tag, float(score)))
    return found


def tag_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Tag -> how many ok images carry it (any tagger), most common first."""
    rows = conn.execute(
        "SELECT t.tag, count(DISTINCT t.image_id) AS n FROM tags t JOIN images i ON i.id = t.image_id "
        "WHERE i.status = 'ok' GROUP BY t.tag ORDER BY n DESC, t.tag"
    )
    return {tag: int(n) for tag, n in rows}


def drop_tags(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    removals = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'removed_tags'").fetchone() is not None
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        conn.execute(f"DELETE FROM tags WHERE image_id IN ({','.join('?' * len(chunk))})", chunk)
        if removals:
            conn.execute(f"DELETE FROM removed_tags WHERE image_id IN ({','.join('?' * len(chunk))})", chunk)


def edit_tags(conn: sqlite3.Connection, image_id: int, add: Sequence[str], remove: Sequence[str]) -> None:
    """Hand edits of one photo's tags: ``add`` stored as the user's, ``remove`` deleted (every source) and
    remembered so no tagger gives them again."""
    for tag in add:
        conn.execute("DELETE FROM removed_tags WHERE image_id = ? AND tag = ?", (image_id, tag.lower()))
        conn.execute(
            "INSERT INTO tags (image_id, tag, score, tagger) VALUES (?, ?, 1.0, ?) "
            "ON CONFLICT (image_id, tagger, tag) DO UPDATE SET score = 1.0",
            (image_id, tag, USER_TAGGER),
        )
    for tag in remove:
        conn.execute("DELETE FROM tags WHERE image_id = ? AND tag = ? COLLATE NOCASE", (image_id, tag))
        conn.execute("INSERT OR IGNORE INTO removed_tags (image_id, tag) VALUES (?, ?)", (image_id, tag.lower()))


# ---- text found in photos (schema v7) -----------------------------------------------------------------------------
def text_matches(
    conn: sqlite3.Connection, codec: PathCodec, query: Sequence[str], limit: int
) -> list[tuple[int, str, str]]:
    """(image id, path, its searchable words) of ok photos whose text holds a word starting with any of the ``query``
    words (FTS5 prefix queries), best-ranked (bm25) first, at most ``limit``."""
    if not query:
        return []
    match = " OR ".join('"' + word.replace('"', '""') + '"*' for word in query)
    rows = conn.execute(
        "SELECT i.id, i.path, p.words FROM photo_text_words w JOIN photo_text p ON p.rowid = w.rowid "
        "JOIN images i ON i.sha = p.sha AND i.status = 'ok' WHERE photo_text_words MATCH ? "
        "ORDER BY w.rank, i.id LIMIT ?",
        (match, int(limit)),
    )
    return [(int(image_id), codec.decode(path), str(text)) for image_id, path, text in rows]


# ---- facets ----------------------------------------------------------------------------------------------------
def facets(conn: sqlite3.Connection, codec: PathCodec, *, has_meta: bool) -> dict[str, Any]:
    """What a filter UI offers: cameras and folders (with counts), the date range, how many photos have GPS
    and how many had their metadata read."""
    folders: dict[str, int] = {}
    for (path,) in conn.execute("SELECT path FROM images WHERE status = 'ok'"):
        relative = codec.relative(codec.decode(path))
        folder = os.path.dirname(relative) or "."
        folders[folder] = folders.get(folder, 0) + 1
    top = sorted(folders.items(), key=lambda item: (-item[1], item[0]))[:MAX_FOLDERS]
    out: dict[str, Any] = {"folders": dict(top), "cameras": {}, "date_range": None, "has_gps": 0, "with_meta": 0}
    if not has_meta:
        return out
    rows = conn.execute(
        "SELECT trim(coalesce(camera_make, '') || ' ' || coalesce(camera_model, '')) AS camera, count(*) AS n "
        "FROM images WHERE status = 'ok' AND (camera_make IS NOT NULL OR camera_model IS NOT NULL) "
        "GROUP BY camera ORDER BY n DESC, camera"
    )
    out["cameras"] = {camera: int(n) for camera, n in rows}
    first, last, gps, read = conn.execute(
        "SELECT min(taken_at), max(taken_at), count(latitude), count(width) FROM images WHERE status = 'ok'"
    ).fetchone()
    out["date_range"] = None if first is None else [float(first), float(last)]
    out["has_gps"], out["with_meta"] = int(gps), int(read)
    return out
