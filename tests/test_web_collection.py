"""The web page's collection tools in a real headless Chromium: filters (date, camera, place, folder, tag) on
search and listing, tag chips, exports, the map's box and lasso selection, colour by folder, and duplicates.

The album is made here from real Flickr8k photos (the 500-px originals): three folders, EXIF written with Pillow
(date taken, camera, GPS position) on two of them, an exact copy and a half-size copy for the duplicates.
Screenshots land in artifacts/web/."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from vistext.server import ServerSettings
from vistext.service import Service

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "web"  # the browser fixture (conftest) makes it
# folder -> (camera make, model, first day taken "YYYY:MM:DD", latitude, longitude); None: photos without EXIF
FOLDERS: dict[str, tuple[str, str, str, float, float] | None] = {
    "beach-2023": ("Canon", "Canon EOS 5D Mark IV", "2023:07:", 43.6950, 7.2650),  # Nice
    "city-2024": ("FUJIFILM", "X-T3", "2024:03:", 48.8570, 2.3520),  # Paris
    "scans": None,
}
PER_FOLDER = 8


def _dms(value: float) -> tuple[float, float, float]:
    degrees = int(abs(value))
    minutes = int((abs(value) - degrees) * 60)
    return float(degrees), float(minutes), round((abs(value) - degrees - minutes / 60) * 3600, 2)


def write_with_exif(source: Path, out: Path, make: str, model: str, taken: str, lat: float, lon: float) -> None:
    """``source`` re-saved to ``out`` with real EXIF: camera, date taken (``YYYY:MM:DD HH:MM:SS``), GPS."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = make
    exif[ExifTags.Base.Model] = model
    exif[ExifTags.Base.DateTime] = taken
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(
        {
            ExifTags.GPS.GPSLatitudeRef: "N" if lat >= 0 else "S",
            ExifTags.GPS.GPSLatitude: _dms(lat),
            ExifTags.GPS.GPSLongitudeRef: "E" if lon >= 0 else "W",
            ExifTags.GPS.GPSLongitude: _dms(lon),
        }
    )
    with Image.open(source) as picture:
        picture.convert("RGB").save(out, exif=exif, quality=92)


def make_album(images: list[Path], root: Path) -> dict[str, list[Path]]:
    """Three folders of real photos (two with EXIF), plus an exact copy and a half-size copy in ``scans``."""
    made: dict[str, list[Path]] = {}
    for f, (folder, camera) in enumerate(FOLDERS.items()):
        (root / folder).mkdir(parents=True)
        made[folder] = []
        for i, source in enumerate(images[f * PER_FOLDER : (f + 1) * PER_FOLDER]):
            out = root / folder / source.name
            if camera is None:
                shutil.copy(source, out)
            else:
                make, model, month, lat, lon = camera
                write_with_exif(source, out, make, model, f"{month}{i + 10:02d} 1{i}:30:00", lat + i * 0.01, lon)
            made[folder].append(out)
    first, second = made["beach-2023"][0], made["city-2024"][1]
    copy, small = root / "scans" / f"copy-of-{first.name}", root / "scans" / f"small-{second.name}"
    shutil.copy(first, copy)  # the same bytes
    with Image.open(second) as picture:
        picture.resize((picture.width // 2, picture.height // 2)).save(small, quality=80)
    made["duplicates"] = [first, copy, second, small]
    return made


@pytest.fixture(scope="module")
def album(
    tmp_path_factory: pytest.TempPathFactory,
    flickr8k_images: list[Path],
    running_server: Callable[..., AbstractContextManager[str]],
    text_search_available: Callable[[], bool],
) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("album")
    photos = root / "photos"
    originals = sorted((flickr8k_images[0].parents[1] / "originals").glob("*.jpg"))  # 500-px real photos
    made = make_album(originals[100 : 100 + PER_FOLDER * len(FOLDERS)], photos)
    db = photos / ".vistext" / "catalogue.sqlite"
    text = text_search_available()
    with Service(db=db, progress=False) as service:
        service.index(photos, text_search=text)
    with running_server(ServerSettings(db=db, map_method="pca", warm_up=False)) as url:
        yield {"url": url, "db": db, "photos": photos, "made": made, "text": text}


def _open_map(page: object, album: dict) -> None:
    page.goto(album["url"] + "/map")
    page.wait_for_selector("body[data-map-ready='1'][data-attributes-ready='1']", timeout=60_000)


def _screen_points(page: object) -> dict[int, tuple[float, float]]:
    """Each point's place on the canvas (CSS pixels from its top left)."""
    ids = page.evaluate("window.vistextMap.data().points.id")
    return {i: tuple(page.evaluate(f"window.vistextMap.screenOf({i})")) for i in ids}


def _drag(page: object, path: list[tuple[float, float]], steps: int = 8, modifier: str | None = None) -> None:
    box = page.locator("#map").bounding_box()
    if modifier:
        page.keyboard.down(modifier)
    page.mouse.move(box["x"] + path[0][0], box["y"] + path[0][1])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(path, path[1:], strict=False):
        for s in range(1, steps + 1):
            page.mouse.move(box["x"] + x0 + (x1 - x0) * s / steps, box["y"] + y0 + (y1 - y0) * s / steps)
    page.mouse.up()
    if modifier:
        page.keyboard.up(modifier)


def _inside(x: float, y: float, polygon: list[tuple[float, float]]) -> bool:
    inside = False
    for a in range(len(polygon)):
        (xa, ya), (xb, yb) = polygon[a], polygon[a - 1]
        if (ya > y) != (yb > y) and x < (xb - xa) * (y - ya) / (yb - ya) + xa:
            inside = not inside
    return inside


def _selected(page: object) -> list[int]:
    page.wait_for_selector("#region:not([hidden])")
    return sorted(int(i) for i in page.eval_on_selector_all("#region-grid .card", "cs => cs.map(c => c.dataset.id)"))


def _download(page: object, button: str) -> str:
    with page.expect_download() as event:
        page.click(button)
    return Path(event.value.path()).read_text(encoding="utf-8")


def test_map_box_selection_shows_and_exports_the_photos_inside(page: object, album: dict) -> None:
    _open_map(page, album)
    points = _screen_points(page)
    xs = sorted(x for x, _ in points.values())
    ys = sorted(y for _, y in points.values())
    box = (xs[0] - 5, ys[0] - 5, xs[len(xs) // 2], ys[-1] + 5)  # the left half of the points
    expected = sorted(i for i, (x, y) in points.items() if box[0] <= x <= box[2] and box[1] <= y <= box[3])
    assert 3 <= len(expected) < len(points)
    page.click("#map-mode button[data-mode=box]")
    _drag(page, [(box[0], box[1]), (box[2], box[3])])
    assert _selected(page) == expected
    assert page.inner_text("#region-count") == f"{len(expected)} photos selected"
    page.wait_for_function("[...document.querySelectorAll('#region-grid img')].every(i => i.complete)")
    page.screenshot(path=str(ARTIFACTS / "map-box.png"))
    rows = list(csv.DictReader(io.StringIO(_download(page, "#region-csv"))))
    assert sorted(int(row["id"]) for row in rows) == expected
    assert all(Path(row["path"]).is_file() and row["folder"] in {*FOLDERS, "."} for row in rows)
    lines = [json.loads(line) for line in _download(page, "#region-jsonl").splitlines()]
    assert sorted(line["id"] for line in lines) == expected
    page.click("#region-clear")
    page.wait_for_selector("#region[hidden]", state="attached")
    # shift-drag in pan mode selects with a box too
    page.click("#map-mode button[data-mode=pan]")
    _drag(page, [(box[0], box[1]), (box[2], box[3])], modifier="Shift")
    assert _selected(page) == expected


def test_map_lasso_selection(page: object, album: dict) -> None:
    _open_map(page, album)
    points = _screen_points(page)
    xs = [x for x, _ in points.values()]
    ys = [y for _, y in points.values()]
    x0, x1, y0, y1 = min(xs) - 8, max(xs) + 8, min(ys) - 8, max(ys) + 8
    triangle = [(x0, y0), (x1, y0), (x0, y1)]  # the upper-left half of the points' bounding box
    expected = sorted(i for i, (x, y) in points.items() if _inside(x, y, triangle))
    assert 3 <= len(expected) < len(points)
    page.click("#map-mode button[data-mode=lasso]")
    _drag(page, [*triangle, triangle[0]])
    assert _selected(page) == expected
    page.screenshot(path=str(ARTIFACTS / "map-lasso.png"))


def test_map_colour_by_folder_has_a_legend(page: object, album: dict) -> None:
    _open_map(page, album)
    page.select_option("#colour-by", "folder")
    page.wait_for_function("document.querySelectorAll('#legend div').length === 3")
    legend = page.eval_on_selector_all(
        "#legend div",
        "rows => rows.map(r => [r.querySelector('.label').textContent, +r.querySelector('.count').textContent])",
    )
    assert dict(legend) == {"beach-2023": PER_FOLDER, "city-2024": PER_FOLDER, "scans": PER_FOLDER + 2}
    colours = page.eval_on_selector_all("#legend i", "dots => dots.map(d => d.style.background)")
    assert len(set(colours)) == 3
    page.screenshot(path=str(ARTIFACTS / "map-folders.png"))
    page.locator("#legend div").first.click()  # hide one folder: its points can no longer be selected
    page.click("#map-mode button[data-mode=box]")
    canvas = page.locator("#map").bounding_box()
    _drag(page, [(1, 1), (canvas["width"] - 2, canvas["height"] - 2)])  # the whole map
    assert len(_selected(page)) == PER_FOLDER * 2


def test_duplicates_section_lists_the_copies(page: object, album: dict) -> None:
    made = album["made"]["duplicates"]
    with Service(db=album["db"], progress=False) as service:
        id_of = {Path(r.path).resolve(): r.id for r in service.store().records()}
    page.goto(album["url"] + "/#duplicates")
    page.click("#dup-button")
    page.wait_for_selector("#dup-groups .dup-group")
    groups = page.eval_on_selector_all(
        "#dup-groups .dup-group",
        "gs => gs.map(g => [g.dataset.kind, [...g.querySelectorAll('.card')].map(c => +c.dataset.id)])",
    )
    exact = [ids for kind, ids in groups if kind == "exact"]
    near = [ids for kind, ids in groups if kind == "near"]
    assert sorted(exact[0]) == sorted([id_of[made[0].resolve()], id_of[made[1].resolve()]])
    assert any(ids[0] == id_of[made[2].resolve()] and id_of[made[3].resolve()] in ids for ids in near), groups
    assert "at similarity 0.85" in page.inner_text("#dup-status")
    page.wait_for_function("[...document.querySelectorAll('#dup-groups img')].every(i => i.complete)")
    page.locator("#duplicates").screenshot(path=str(ARTIFACTS / "duplicates.png"))
    page.fill("#dup-threshold", "0.99")  # stricter: only the exact copies are left
    page.click("#dup-button")
    page.wait_for_function("document.querySelector('#dup-status').textContent.includes('0.99')")
    kinds = page.eval_on_selector_all("#dup-groups .dup-group", "gs => gs.map(g => g.dataset.kind)")
    assert kinds == ["exact"]
