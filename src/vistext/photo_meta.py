"""What a photo's file says about it: EXIF date taken, camera make/model, GPS position, orientation, and the
pixel size from its header. Reading it opens the file through ``vistext.images.open_regular`` (or reads a
``PhotoFile`` already open, so the metadata comes from the bytes that were hashed) and reads the header and
EXIF block only, no pixel decoding.

Bad metadata never fails a photo: a field that is missing, garbled or out of range (a date "0000:00:00", GPS
latitude 95 degrees, a zero denominator, a truncated EXIF block) is simply None.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from PIL import Image

from vistext.file_messages import decoding
from vistext.images import FORMATS, PhotoFile, open_regular

# EXIF tags (see the EXIF 2.32 specification)
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
MAKE, MODEL, ORIENTATION, DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
DATETIME_ORIGINAL, DATETIME_DIGITIZED = 0x9003, 0x9004
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 1, 2, 3, 4
_TEXT_LIMIT = 100


@dataclass
class PhotoMeta:
    """What a photo's file says about it (EXIF and header); any field the file lacks or garbles is None.

    ``taken_at`` is unix seconds from DateTimeOriginal (else DateTime), read as UTC wall-clock time since EXIF
    carries no zone; ``latitude``/``longitude`` are signed degrees (WGS84); ``orientation`` is the EXIF value
    1-8; ``width``/``height`` are the stored pixel size (before orientation is applied).
    """

    taken_at: float | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    width: int | None = None
    height: int | None = None
    orientation: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_photo_meta(source: str | Path | PhotoFile) -> PhotoMeta | None:
    """The metadata of a photo file (a path, or a ``PhotoFile`` already open), or None when it cannot even be
    opened as an image (the indexer reports that).

    What Pillow says about a broken EXIF block ("Corrupt EXIF data") is attributed to the file (see
    ``vistext.file_messages``), as when the file is decoded."""
    path = Path(source.path if isinstance(source, PhotoFile) else source)
    try:
        with source.reader() if isinstance(source, PhotoFile) else open_regular(path) as handle:
            return _read(path, handle)
    except Exception:  # noqa: BLE001 - not an image at all: the decoder says why when it tries
        return None


def _read(path: Path, handle: IO[bytes]) -> PhotoMeta:
    with decoding(path, handle.peek(16)), Image.open(handle, formats=FORMATS) as image:  # type: ignore[attr-defined]
        width, height = image.size
        meta = PhotoMeta(width=int(width), height=int(height))
        try:
            _fill_from_exif(meta, image.getexif())
        except Exception:  # noqa: BLE001 - a corrupt EXIF block leaves the EXIF fields None
            pass
    return meta


def _fill_from_exif(meta: PhotoMeta, exif: Image.Exif) -> None:
    try:
        details: Any = exif.get_ifd(EXIF_IFD)
    except Exception:  # noqa: BLE001
        details = {}
    try:
        gps: Any = exif.get_ifd(GPS_IFD)
    except Exception:  # noqa: BLE001
        gps = {}
    meta.taken_at = next(
        (t for t in (_date(details.get(DATETIME_ORIGINAL)), _date(exif.get(DATETIME))) if t is not None), None
    )
    meta.camera_make = _text(exif.get(MAKE))
    meta.camera_model = _text(exif.get(MODEL))
    orientation = exif.get(ORIENTATION)
    meta.orientation = orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None
    lat = _degrees(gps.get(GPS_LAT), gps.get(GPS_LAT_REF), "N", "S", 90)
    lon = _degrees(gps.get(GPS_LON), gps.get(GPS_LON_REF), "E", "W", 180)
    if lat is not None and lon is not None and not (lat == 0 and lon == 0):  # 0,0: a camera without a fix
        meta.latitude, meta.longitude = lat, lon


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    cleaned = "".join(ch for ch in value if ch.isprintable()).strip()
    return cleaned[:_TEXT_LIMIT] or None


def _date(value: Any) -> float | None:
    """Unix seconds of an EXIF "YYYY:MM:DD HH:MM:SS" (read as UTC), or None for anything else."""
    text = _text(value)
    if text is None:
        return None
    for pattern in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y:%m:%d"):
        try:
            moment = datetime.strptime(text[:19], pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
        return moment.timestamp() if 1800 <= moment.year <= 2200 else None
    return None


def _degrees(value: Any, ref: Any, positive: str, negative: str, limit: float) -> float | None:
    """Signed degrees from EXIF (degrees, minutes, seconds) rationals and an N/S or E/W reference."""
    try:
        parts = [float(part) for part in value]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if len(parts) != 3 or not all(math.isfinite(p) and p >= 0 for p in parts) or parts[1] >= 60 or parts[2] >= 60:
        return None
    degrees = parts[0] + parts[1] / 60 + parts[2] / 3600
    reference = _text(ref)
    if reference not in (positive, negative) or degrees > limit:
        return None
    return round(-degrees if reference == negative else degrees, 7)
