"""Filters over a collection's photos as every surface spells them (CLI options, HTTP query parameters), and
the metadata and tags a result item carries.

``parse_filter`` turns the text forms into a ``vistext.store.records.ImageFilter`` with one-line errors:
dates ``YYYY-MM-DD`` or ISO datetimes (read as UTC, like EXIF times, which carry no zone; ``after`` inclusive,
``before`` exclusive, so ``--after 2024-06-01 --before 2024-07-01`` is June), ``near`` as ``LAT,LON,KM``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vistext.errors import UsageError

if TYPE_CHECKING:
    from vistext.store import Store
    from vistext.store.records import ImageFilter, PhotoMeta

FILTER_NAMES = ("after", "before", "camera", "near", "folder", "tag", "has_text")
MAX_TEXT = 200  # camera, folder and tag filters are short names, not documents
MAX_KM = 20_000  # half the Earth's circumference is 20,015 km: every distance is within it
# What the parsers accept, as regular expressions (the HTTP API's schema states them, so a request the schema
# allows is answered): days that exist in their month, and February 29 in any year (March 1 in a common year).
_MONTH_DAY = r"((0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)|02-(0[1-9]|1\d|2\d))"
DATE_PATTERN = (
    rf"^\s*[12]\d{{3}}-{_MONTH_DAY}"
    r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?)?\s*$"
)
_LAT = r"-?(90(\.0+)?|[1-8]?\d(\.\d+)?)"
_LON = r"-?(180(\.0+)?|(1[0-7]\d|[1-9]?\d)(\.\d+)?)"
_KM = r"((\d{1,4}|1\d{4})(\.\d+)?|20000(\.0+)?)"
NEAR_PATTERN = rf"^\s*{_LAT}\s*,\s*{_LON}\s*,\s*{_KM}\s*$"
PATTERN_MESSAGES = {  # what a value not matching each pattern is told (instead of the regular expression)
    DATE_PATTERN: "not a date (use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)",
    NEAR_PATTERN: f"not LAT,LON,KM (latitude -90 to 90, longitude -180 to 180, 0 to {MAX_KM} km; e.g. 48.85,2.35,10)",
}


def parse_date(name: str, text: str) -> float:
    """Unix seconds of ``YYYY-MM-DD`` or an ISO datetime (UTC unless it names a zone), as ``DATE_PATTERN``
    spells them (the one rule of the CLI and the HTTP API); February 29 of a common year is March 1."""
    if re.match(DATE_PATTERN, text) is None:
        raise UsageError(f"{name}: {text!r} is {PATTERN_MESSAGES[DATE_PATTERN]}")
    value = text.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:  # the pattern allows February 29 in any year
        moment = datetime.fromisoformat(value[:5] + "03-01" + value[10:])
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_near(text: str) -> tuple[float, float, float]:
    """``LAT,LON,KM`` -> (latitude, longitude, km), checked: |lat| <= 90, |lon| <= 180, 0 <= km <= 20,000 (0:
    the exact position)."""
    parts = [part.strip() for part in text.split(",")]
    try:
        lat, lon, km = (float(part) for part in parts) if len(parts) == 3 else (math.nan,) * 3
    except ValueError:
        lat = lon = km = math.nan
    if not all(math.isfinite(v) for v in (lat, lon, km)):
        raise UsageError(f"near: {text!r} is not LAT,LON,KM (e.g. 48.8566,2.3522,10)")
    if not -90 <= lat <= 90 or not -180 <= lon <= 180:
        raise UsageError(f"near: latitude must be in [-90, 90] and longitude in [-180, 180], got {lat}, {lon}")
    if not 0 <= km <= MAX_KM:
        raise UsageError(f"near: the radius must be from 0 to {MAX_KM} km, got {km}")
    return lat, lon, km


def _text(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    if not stripped:
        raise UsageError(f"{name}: empty value")
    if not is_text(stripped):
        raise UsageError(f"{name}: {value!r} is not valid UTF-8 text")
    if len(stripped) > MAX_TEXT:
        raise UsageError(f"{name}: at most {MAX_TEXT} characters, got {len(stripped)}")
    return stripped


def is_text(value: str) -> bool:
    """Whether ``value`` is text SQLite and the tokenizers can take: no lone surrogate (the escape a byte that
    is not UTF-8 gets on a command line or in a JSON string)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_filter(
    after: str | None = None,
    before: str | None = None,
    camera: str | None = None,
    near: str | None = None,
    folder: str | None = None,
    tag: str | None = None,
    has_text: bool | None = None,
) -> ImageFilter:
    """An ``ImageFilter`` from the text forms (None: no condition); ``UsageError`` names the bad one.
    ``has_text``: only photos holding text found by ``index --ocr`` (False: only those holding none)."""
    from vistext.store.records import ImageFilter

    return ImageFilter(  # an "after" later than "before" is a filter no photo passes, not an error
        after=None if after is None else parse_date("after", after),
        before=None if before is None else parse_date("before", before),
        camera=_text("camera", camera),
        near=None if near is None else parse_near(near),
        folder=_text("folder", folder),
        tag=_text("tag", tag),
        has_text=has_text,
    )


def meta_dict(meta: PhotoMeta | None) -> dict[str, Any] | None:
    """A result item's ``meta``: the PhotoMeta fields plus ``taken`` (``taken_at`` as ISO UTC text)."""
    if meta is None:
        return None
    out = meta.to_dict()
    out["taken"] = None if meta.taken_at is None else iso_time(meta.taken_at)
    return out


def iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def describe(
    store: Store, ids: Iterable[int]
) -> dict[int, tuple[dict[str, Any] | None, list[dict[str, Any]], str | None]]:
    """Id -> (meta dict or None, [{tag, score}], the text found in it or None) of these indexed images, read in
    three short queries (the metadata columns only: no features or vectors, which made a served search 4x
    slower)."""
    wanted = [int(i) for i in ids]
    tags = store.tags_for(wanted)
    texts = store.photo_texts(wanted)
    metas = store.photo_metas(wanted)
    out: dict[int, tuple[dict[str, Any] | None, list[dict[str, Any]], str | None]] = {}
    for image_id in wanted:  # a catalogue without metadata columns (read-only, older schema): no meta
        pairs = [{"tag": tag, "score": round(score, 6)} for tag, score in tags.get(image_id, [])]
        out[image_id] = (meta_dict(metas.get(image_id)), pairs, texts.get(image_id))
    return out
