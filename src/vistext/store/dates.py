"""A photo's date and the collection newest first, one SQL for both backends (like ``picture_hashes``: ``mark``
is the backend's query-parameter marker, ``?`` for SQLite, ``%s`` for PostgreSQL).

A photo's date is when it was taken (EXIF ``DateTimeOriginal``, the ``taken_at`` column) and, for a photo
without one (a scan, a screenshot, metadata stripped), its file's modification time: the one rule every
listing, date sort and duplicate ordering uses (``record_date`` is the same rule in Python). Pages are cut by
``offset`` or by a cursor, the (date, id) of the last photo shown, which stays right while photos are added.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from vistext.store.records import ImageRecord, great_circle_km

DATE = "coalesce(i.taken_at, i.mtime)"
FILE_DATE = "i.mtime"  # a catalogue from before metadata has no taken_at column
_CHUNK = 500
_MOST = 2**62


def record_date(record: ImageRecord) -> float:
    """The date (unix seconds) a photo sorts by: when it was taken, else its file's modification time."""
    meta = record.meta
    return float(meta.taken_at if meta is not None and meta.taken_at is not None else record.mtime)


def newest_first(
    conn: Any,
    where: str,
    params: Sequence[Any],
    mark: str,
    *,
    k: int,
    offset: int = 0,
    after: tuple[float, int] | None = None,
    near: tuple[float, float, float] | None = None,
    has_meta: bool = True,
) -> list[tuple[int, float]]:
    """Up to ``k`` (id, date) of the rows of ``images i`` passing ``where``, newest first (ties: the first
    indexed first, so an exact copy comes after its original), skipping ``offset`` of them and, with ``after``,
    every one at or before that (date, id). ``near`` (lat, lon, km) keeps only photos within km of the point
    (``where`` holds its bounding box)."""
    date = DATE if has_meta else FILE_DATE
    params = list(params)
    k, offset = min(int(k), _MOST), min(int(offset), _MOST)  # SQL numbers are 64-bit: past them nothing is left
    if after is not None:
        where += f" AND ({date} < {mark} OR ({date} = {mark} AND i.id > {mark}))"
        params += [float(after[0]), float(after[0]), int(after[1])]
    order = f"ORDER BY {date} DESC, i.id"
    if near is None:
        query = f"SELECT i.id, {date} FROM images i WHERE {where} {order} LIMIT {mark} OFFSET {mark}"
        return [(int(i), float(when)) for i, when in conn.execute(query, [*params, k, offset]).fetchall()]
    lat, lon, km = near
    query = f"SELECT i.id, {date}, i.latitude, i.longitude FROM images i WHERE {where} {order}"
    rows = conn.execute(query, params).fetchall()
    inside = [(int(i), float(when)) for i, when, a, b in rows if great_circle_km(lat, lon, a, b) <= km]
    return inside[offset : offset + k]


def dates_of(conn: Any, ids: Iterable[int], mark: str, *, has_meta: bool = True) -> dict[int, float]:
    """Image id -> its date, for those of ``ids`` in the catalogue."""
    date = DATE if has_meta else FILE_DATE
    wanted = [int(i) for i in ids if -(2**63) <= int(i) < 2**63]
    found: dict[int, float] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        query = f"SELECT i.id, {date} FROM images i WHERE i.id IN ({', '.join([mark] * len(chunk))})"
        found.update((int(i), float(when)) for i, when in conn.execute(query, chunk).fetchall())
    return found
