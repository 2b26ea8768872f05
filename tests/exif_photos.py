"""Real photos re-saved with real EXIF for the tests that read it back: date taken, optionally camera and GPS."""

from __future__ import annotations

from pathlib import Path

from PIL import ExifTags, Image


def _dms(value: float) -> tuple[float, float, float]:
    degrees = int(abs(value))
    minutes = int((abs(value) - degrees) * 60)
    return float(degrees), float(minutes), round((abs(value) - degrees - minutes / 60) * 3600, 2)


def save_with_exif(
    source: Path, out: Path, taken: str, *, camera: tuple[str, str] | None = None,
    position: tuple[float, float] | None = None, quality: int = 92, with_datetime: bool = False,
) -> None:  # fmt: skip
    """``source`` re-saved to ``out`` as JPEG with the date taken (``YYYY:MM:DD HH:MM:SS``), and the ``camera``
    (make, model), the GPS ``position`` (lat, lon) and the file's DateTime tag when given."""
    exif = Image.Exif()
    if camera is not None:
        exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = camera
    if with_datetime:
        exif[ExifTags.Base.DateTime] = taken
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken
    if position is not None:
        lat, lon = position
        exif.get_ifd(ExifTags.IFD.GPSInfo).update(
            {
                ExifTags.GPS.GPSLatitudeRef: "N" if lat >= 0 else "S",
                ExifTags.GPS.GPSLatitude: _dms(lat),
                ExifTags.GPS.GPSLongitudeRef: "E" if lon >= 0 else "W",
                ExifTags.GPS.GPSLongitude: _dms(lon),
            }
        )
    with Image.open(source) as picture:
        picture.convert("RGB").save(out, exif=exif, quality=quality)
