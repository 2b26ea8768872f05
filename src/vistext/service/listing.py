"""The collection as a list: its photos under a filter (paged), exported as CSV or JSON Lines, and the
facets and tag counts a filter UI offers. Everything comes from the catalogue: no photo is read.

Every export escapes for its format: CSV text cells that a spreadsheet would run as formulas are quoted
(``csv_cell``); JSON Lines are exact (JSON escapes what it must)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from vistext.errors import UsageError
from vistext.service.filters import iso_time, meta_dict
from vistext.service.ordering import cursor_text, parse_cursor
from vistext.service.results import json_text

if TYPE_CHECKING:
    from vistext.store import Store
    from vistext.store.records import ImageFilter

ORDER = "newest first: date taken (EXIF), else the file's modification time"
EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_PAGE = 256
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet read a text cell as a formula
CSV_COLUMNS = (
    "id",
    "path",
    "tags",
    "scores",
    "taken",
    "taken_at",
    "camera_make",
    "camera_model",
    "latitude",
    "longitude",
    "width",
    "height",
    "orientation",
    "text",
)


@dataclass
class ListedImage:
    id: int
    path: str
    meta: dict[str, Any] | None
    tags: list[dict[str, Any]]
    text: str | None = None  # the text found in it (index --ocr)
    date: float | None = None  # what it sorts by: taken (EXIF), else the file's time (listings, not exports)
    copy_of: int | None = None  # a copy of this photo, shown earlier on the same page

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "path": self.path, "meta": self.meta, "tags": self.tags}
        if self.text is not None:
            out["text"] = self.text
        if self.date is not None:
            taken = self.meta is not None and self.meta.get("taken_at") is not None
            out |= {"date": iso_time(self.date), "dated_by": "taken" if taken else "file"}
        if self.copy_of is not None:
            out["copy_of"] = self.copy_of
        return out


@dataclass
class ListResult:
    """One page of the photos passing ``filter``, newest first (``ORDER``), and how many pass in all (None on a
    page asked for by cursor); ``next_cursor`` asks for the next page (None: this was the last)."""

    total: int | None
    offset: int
    results: list[ListedImage]
    filter: dict[str, Any] = field(default_factory=dict)
    next_cursor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "offset": self.offset,
            "filter": self.filter,
            "order": ORDER,
            "next_cursor": self.next_cursor,
            "results": [item.to_dict() for item in self.results],
        }


def _matching(store: Store, filter: ImageFilter | None) -> list[int]:
    from vistext.store.records import ImageFilter

    return [int(i) for i in store.ids_matching(filter or ImageFilter())]


def _items(store: Store, ids: list[int]) -> list[ListedImage]:
    tags, texts = store.tags_for(ids), store.photo_texts(ids)
    return [
        ListedImage(
            record.id,
            record.path,
            meta_dict(record.meta),
            [{"tag": tag, "score": round(score, 6)} for tag, score in tags.get(record.id, [])],
            texts.get(record.id),
        )
        for record in store.records(ids)
        if record.id is not None
    ]


def list_images(
    store: Store, filter: ImageFilter | None, k: int, offset: int = 0, cursor: str | None = None
) -> ListResult:
    """Photos passing ``filter``, newest first (``ORDER``), ``k`` from ``offset`` or after ``cursor`` (a
    previous page's ``next_cursor``); a copy of a photo shown before it on the page says so (``copy_of``)."""
    from vistext.service.copies import copies_among
    from vistext.store.records import ImageFilter

    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}")
    if offset < 0:
        raise UsageError(f"offset must be >= 0, got {offset}")
    after = None if cursor is None else parse_cursor(cursor)
    dated = store.newest_first(filter or ImageFilter(), k, offset=0 if after else offset, after=after)
    items = {item.id: item for item in _items(store, [i for i, _ in dated])}
    copies = copies_among(store, list(items)) if len(items) > 1 else {}
    shown = [replace(items[i], date=date, copy_of=copies.get(i)) for i, date in dated if i in items]
    following = cursor_text(dated[-1][1], dated[-1][0]) if len(dated) == k else None  # a full page: maybe more
    # counting reads every matching id: asked once, with the first page, not again as the page scrolls
    total = None if after is not None else len(store.ids_matching(filter or ImageFilter()))
    return ListResult(total, offset, shown, filter.to_dict() if filter is not None else {}, following)


def export_lines(store: Store, filter: ImageFilter | None, format: str) -> Iterator[str]:
    """The photos passing ``filter`` as ``csv`` (header first; tags and scores ";"-separated, best first) or
    ``jsonl`` (one ``{id, path, tags, meta}`` object per line), streamed page by page."""
    if format not in EXPORT_FORMATS:
        raise UsageError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    ids = _matching(store, filter)
    if format == "csv":
        yield _csv_row(CSV_COLUMNS)
    for start in range(0, len(ids), EXPORT_PAGE):
        for item in _items(store, ids[start : start + EXPORT_PAGE]):
            if format == "jsonl":
                yield json_text(item.to_dict(), compact=True) + "\n"
            else:
                yield _csv_row(_csv_values(item))


def _csv_values(item: ListedImage) -> list[Any]:
    meta = item.meta or {}
    taken_at = meta.get("taken_at")
    return [
        item.id,
        item.path,
        ";".join(tag["tag"] for tag in item.tags),
        ";".join(f"{tag['score']:.4f}" for tag in item.tags),
        "" if taken_at is None else iso_time(taken_at),
        "" if taken_at is None else taken_at,
        *("" if meta.get(name) is None else meta[name] for name in CSV_COLUMNS[6:-1]),
        item.text or "",
    ]


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (``=HYPERLINK(...)`` in an EXIF camera make, ``+cmd|...``
    in a tag) quoted by a leading ``'``, as OWASP's CSV injection rule says: text starting with ``= + - @``, a
    tab or a carriage return. Numbers (a negative latitude) are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _csv_row(values: Any) -> str:
    """Every export's CSV line is written here, so every cell is escaped for a spreadsheet."""
    buffer = io.StringIO()
    # "\r\n" as the terminator makes the writer quote a cell holding either character (a file name with a CR
    # in it would otherwise break the row); the line itself ends in "\n", as every line vistext writes
    csv.writer(buffer, lineterminator="\r\n").writerow([csv_cell(value) for value in values])
    return buffer.getvalue()[:-2] + "\n"


def facets(store: Store) -> dict[str, Any]:
    """The store's facets with the date range also as ISO text (``first``/``last``)."""
    found = dict(store.facets())
    dates = found.get("date_range")
    found["first"], found["last"] = (iso_time(dates[0]), iso_time(dates[1])) if dates else (None, None)
    return found


def parse_export_format(text: str) -> str:
    value = text.strip().lower()
    if value not in EXPORT_FORMATS:
        raise UsageError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {text!r}")
    return value
