"""EXIF metadata: read from real photos written with real EXIF blocks, stored at index time, filled for
unchanged files of an upgraded v3 catalogue without re-encoding them, and never failing a photo."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from vistext.photo_meta import EXIF_IFD, GPS_IFD, read_photo_meta
from vistext.store.records import ImageFilter

BERLIN = (52.520008, 13.404954)


def _dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return Fraction(degrees), Fraction(minutes), Fraction(round(seconds * 10000), 10000)


def write_exif_photo(
    source: Path,
    out: Path,
    *,
    taken: str | None = "2021:07:14 10:30:00",
    make: str | None = "Canon",
    model: str | None = "EOS 80D",
    gps: tuple[float, float] | None = BERLIN,
    orientation: int | None = 6,
    gps_refs: tuple[str, str] | None = None,
) -> Path:
    """A real JPEG of ``source`` (downscaled) with a real EXIF block: dates, camera, GPS rational tuples."""
    with Image.open(source) as image:
        picture = image.convert("RGB")
    picture.thumbnail((320, 320))
    exif = Image.Exif()
    if make is not None:
        exif[0x010F] = make
    if model is not None:
        exif[0x0110] = model
    if orientation is not None:
        exif[0x0112] = orientation
    if taken is not None:
        exif[0x0132] = taken
        exif.get_ifd(EXIF_IFD)[0x9003] = taken
    if gps is not None:
        lat, lon = gps
        north, east = gps_refs or ("N" if lat >= 0 else "S", "E" if lon >= 0 else "W")
        exif.get_ifd(GPS_IFD).update({1: north, 2: _dms(abs(lat)), 3: east, 4: _dms(abs(lon))})
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out, "JPEG", quality=85, exif=exif)
    return out


@pytest.fixture
def service_factory() -> Callable[..., Any]:
    from vistext.service import Service

    return lambda db=None: Service(db=db, progress=False)


def test_reads_date_camera_gps_size_and_orientation(real_jpegs: list[Path], tmp_path: Path) -> None:
    photo = write_exif_photo(real_jpegs[0], tmp_path / "a.jpg")
    meta = read_photo_meta(photo)
    assert meta is not None
    assert meta.taken_at == datetime(2021, 7, 14, 10, 30, tzinfo=UTC).timestamp()
    assert (meta.camera_make, meta.camera_model, meta.orientation) == ("Canon", "EOS 80D", 6)
    assert meta.latitude == pytest.approx(BERLIN[0], abs=1e-5) and meta.longitude == pytest.approx(BERLIN[1], abs=1e-5)
    with Image.open(photo) as image:
        assert (meta.width, meta.height) == image.size
    south_west = read_photo_meta(write_exif_photo(real_jpegs[0], tmp_path / "sw.jpg", gps=(-33.8688, -151.2093)))
    assert south_west is not None and south_west.latitude == pytest.approx(-33.8688, abs=1e-5)
    assert south_west.longitude == pytest.approx(-151.2093, abs=1e-5)


def test_photos_without_exif_get_their_size_only(sample_photos: Path) -> None:
    meta = read_photo_meta(sample_photos / "chelsea.png")
    assert meta is not None and (meta.width, meta.height) == (451, 300)
    assert (meta.taken_at, meta.camera_make, meta.latitude) == (None, None, None)
    assert read_photo_meta(sample_photos / "missing.jpg") is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"taken": "0000:00:00 00:00:00"}, {"taken_at": None}),
        ({"taken": "yesterday"}, {"taken_at": None}),
        ({"taken": "2021:13:45 99:00:00"}, {"taken_at": None}),
        ({"gps": (95.0, 13.4), "gps_refs": ("N", "E")}, {"latitude": None, "longitude": None}),
        ({"gps": (52.5, 13.4), "gps_refs": ("Q", "E")}, {"latitude": None, "longitude": None}),
        ({"orientation": 42}, {"orientation": None}),
        ({"make": "\x00\x01", "model": ""}, {"camera_make": None, "camera_model": None}),
    ],
)
def test_odd_exif_values_are_left_empty(
    real_jpegs: list[Path], tmp_path: Path, fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    meta = read_photo_meta(write_exif_photo(real_jpegs[0], tmp_path / "odd.jpg", **fields))
    assert meta is not None and meta.width is not None
    for name, value in expected.items():
        assert getattr(meta, name) == value, name


def _corrupt_exif(photo: Path) -> Path:
    """Garble the EXIF block's IFD entries (after the TIFF header) while keeping the JPEG decodable."""
    data = bytearray(photo.read_bytes())
    start = data.index(b"Exif\x00\x00") + 6
    data[start + 8 : start + 60] = bytes((i * 37 + 11) % 256 for i in range(52))
    photo.write_bytes(bytes(data))
    return photo


def test_a_corrupt_exif_block_never_fails_the_photo(
    real_jpegs: list[Path], tmp_path: Path, service_factory: Callable[..., Any]
) -> None:
    folder = tmp_path / "photos"
    _corrupt_exif(write_exif_photo(real_jpegs[0], folder / "corrupt.jpg"))
    write_exif_photo(real_jpegs[1], folder / "good.jpg")
    with pytest.warns(UserWarning):  # Pillow's "Corrupt EXIF data": outside indexing, a plain warning
        meta = read_photo_meta(folder / "corrupt.jpg")
    assert meta is not None and meta.width is not None and meta.camera_make is None
    with service_factory() as service:
        report = service.index(folder, text_search=False)
        assert report.failed == 0 and report.added == 2
        assert report.warnings and {path for path, _ in report.warnings} == {str(folder / "corrupt.jpg")}
        record = service.store().get(str(folder / "corrupt.jpg"))
        assert record.status == "ok" and record.meta.width == meta.width


def test_index_stores_metadata_and_fills_an_upgraded_v3_catalogue_without_reencoding(
    real_jpegs: list[Path], tmp_path: Path, service_factory: Callable[..., Any]
) -> None:
    from vistext.store.sqlite.catalogue import Catalogue

    folder = tmp_path / "photos"
    write_exif_photo(real_jpegs[0], folder / "berlin.jpg")
    write_exif_photo(real_jpegs[1], folder / "sub" / "nikon.jpg", make="NIKON", model="D750", gps=None)
    write_exif_photo(real_jpegs[2], folder / "sub" / "plain.jpg", taken=None, make=None, model=None, gps=None)
    db = folder / ".vistext" / "catalogue.sqlite"
    with service_factory() as service:
        report = service.index(folder, text_search=False)
        assert report.added == 3
        records = {Path(r.path).name: r for r in service.store().records()}
    assert records["berlin.jpg"].meta.camera_model == "EOS 80D"
    assert records["nikon.jpg"].meta.latitude is None and records["plain.jpg"].meta.taken_at is None
    # rewrite the catalogue as the previous release (v3) kept it: same rows, no metadata columns
    old_db = tmp_path / "old" / ".vistext" / "catalogue.sqlite"
    old = Catalogue(old_db, target_version=3)
    for record in records.values():
        record.path = str(tmp_path / "old" / Path(record.path).relative_to(folder))
        record.meta = None
    old.upsert(list(records.values()))
    old.close()
    for record in records.values():
        write_exif_photo(real_jpegs[0], Path(record.path), make="Leica" if "nikon" not in record.path else "NIKON")
    with sqlite3.connect(old_db) as conn:  # the indexer must see these files as unchanged: same size and mtime
        for record in records.values():
            stat = Path(record.path).stat()
            conn.execute("UPDATE images SET size = ?, mtime = ? WHERE id = ?", (stat.st_size, stat.st_mtime, record.id))
    with service_factory(db=old_db) as service:
        store = service.store()
        assert store.info()["schema_version"] == 8 and store.count("ok") == 3
        assert store.paths_without_meta() == {r.path for r in records.values()}
        report = service.index(tmp_path / "old", text_search=False)
        assert (report.unchanged, report.added, report.updated, report.meta_filled) == (3, 0, 0, 3)
        assert store.paths_without_meta() == set()
        assert len(store.ids_matching(ImageFilter(camera="leica"))) == 2
        assert len(store.ids_matching(ImageFilter(camera="nikon", folder="sub"))) == 1
        again = service.index(tmp_path / "old", text_search=False)
        assert again.meta_filled == 0 and again.unchanged == 3
    assert db.is_file()


def test_metadata_of_a_fifo_or_device_is_none_without_blocking(tmp_path: Path) -> None:
    import os
    import threading

    fifo, device = tmp_path / "pipe.jpg", tmp_path / "zero.jpg"
    os.mkfifo(fifo)  # open(path) of a FIFO waits for a writer forever; the one door refuses it at once
    device.symlink_to("/dev/zero")
    found: list[object] = []
    reader = threading.Thread(target=lambda: found.extend(read_photo_meta(p) for p in (fifo, device)), daemon=True)
    reader.start()
    reader.join(10)
    assert found == [None, None], "read_photo_meta blocked on a FIFO"
