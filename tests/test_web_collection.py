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

import httpx
import pytest
from conftest import settled_box  # the map page re-flows as its panels fill in
from exif_photos import save_with_exif
from PIL import Image

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
# the stored collection tags of each folder's photos (as `vistext tag --collection` stores a tagger's), best first
TAGS = {"beach-2023": [("beach", 0.91), ("sea", 0.62)], "city-2024": [("street", 0.84)], "scans": [("paper", 0.55)]}


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
                save_with_exif(
                    source,
                    out,
                    f"{month}{i + 10:02d} 1{i}:30:00",
                    camera=(make, model),
                    position=(lat + i * 0.01, lon),
                    with_datetime=True,
                )
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
        store = service.store()
        folder_of = {r.id: Path(r.path).parent.name for r in store.records()}
        store.set_tags("scenes", {i: TAGS[folder] for i, folder in folder_of.items()})
        store.set_tags("default", {i: [] for i in folder_of})  # these tests fix every tag by hand
    with running_server(ServerSettings(db=db, map_method="pca", warm_up=False)) as url:
        yield {"url": url, "db": db, "photos": photos, "made": made, "text": text}


def _cards(page: object) -> list[str]:
    """The paths of the photos shown in the results grid."""
    return page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.title)")


def _apply(page: object, **values: str) -> None:
    """Set these filters (others cleared) and apply them; waits for the listing or search they redo."""
    for name in ("after", "before", "near"):
        page.fill(f"#filters [name={name}]", values.get(name, ""))
    for name in ("camera", "folder", "tag"):
        page.select_option(f"#filters [name={name}]", values.get(name, ""))
    with page.expect_response(lambda r: "/api/list" in r.url or "/api/search" in r.url):
        page.click("#filters-apply")
    _settled(page)


def _settled(page: object) -> None:
    """Wait until the search, or the timeline's page, has been drawn."""
    page.wait_for_function(
        "!document.querySelector('#search-button').disabled && !document.querySelector('#more').dataset.loading"
    )


def test_filters_narrow_the_listing_and_the_search(page: object, album: dict) -> None:
    page.goto(album["url"] + "/")
    page.wait_for_selector("#filters[data-loaded='1']")
    cameras = page.eval_on_selector_all("#filters [name=camera] option", "os => os.map(o => o.textContent)")
    assert cameras == ["any camera", "Canon Canon EOS 5D Mark IV (9)", "FUJIFILM X-T3 (8)"]  # 9: the exact copy too
    folders = page.eval_on_selector_all("#filters [name=folder] option", "os => os.map(o => o.value)")
    assert sorted(folders) == ["", *sorted(FOLDERS)]
    _apply(page, camera="FUJIFILM X-T3")  # no words typed: the photos passing the filters are listed
    assert len(_cards(page)) == PER_FOLDER and all("/city-2024/" in p for p in _cards(page))
    assert page.inner_text("#filter-summary").split("\n") == ["active filters:", "camera: FUJIFILM X-T3", "×"]
    taken = page.eval_on_selector_all("#results .taken", "els => els.map(e => e.textContent)")
    assert len(taken) == PER_FOLDER and all(t.startswith("2024-03-") and t.endswith("FUJIFILM X-T3") for t in taken)
    # days 12, 13, 14 and 15 of the beach photos (10th to 17th); "before" is exclusive
    _apply(page, after="2023-07-12", before="2023-07-16", folder="beach-2023")
    assert sorted(t[:10] for t in page.eval_on_selector_all("#results .taken", "es => es.map(e => e.textContent)")) == [
        f"2023-07-{day}" for day in (12, 13, 14, 15)
    ]
    _apply(page, near="48.857,2.352,3")  # within 3 km of the first Paris photo: 0, 1.1 and 2.2 km away
    assert len(_cards(page)) == 3 and all("/city-2024/" in p for p in _cards(page))
    if album["text"]:  # words and filters together: only photos passing the filters, ranked by the words
        page.fill("#q", "people walking in a city street")
        page.click("#search-button")
        page.wait_for_function("document.querySelector('#search-status').textContent.includes('“')")
        assert 1 <= len(_cards(page)) <= 3 and all("/city-2024/" in p for p in _cards(page))
    # the words in the box now go with new filters (none: the photos passing them are listed)
    page.fill("#q", "a child playing by the sea" if album["text"] else "")
    _apply(page, after="2023-01-01", camera="Canon Canon EOS 5D Mark IV", tag="beach")
    assert len(_cards(page)) == PER_FOLDER and all("/beach-2023/" in p for p in _cards(page))
    if album["text"]:
        status = page.inner_text("#search-status")  # "results 1–8 for …", or "no strong match for …; closest: 1–8"
        assert "for “a child playing by the sea”" in status and "1–8" in status
    page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete)")
    page.locator("#search").screenshot(path=str(ARTIFACTS / "filters.png"))
    page.fill("#q", "")
    page.click("#filters-clear")
    page.wait_for_function("document.querySelector('#filter-summary').textContent.includes('no filters')")
    # the unfiltered timeline arrives after the summary changes, page after page as it is scrolled
    for _ in range(20):
        page.mouse.wheel(0, 5000)
        if page.get_attribute("#more", "data-done") == "1":
            break
        page.wait_for_timeout(200)
    page.wait_for_function("document.querySelector('#more').dataset.done === '1'")
    assert len(_cards(page)) == 3 * PER_FOLDER  # the two copies are folded into their originals' tiles
    page.fill("#filters [name=near]", "somewhere")  # checked on the page: one line, nothing sent
    page.click("#filters-apply")
    assert "lat,lon,km" in page.inner_text("#filter-summary")


def test_a_tag_chip_filters_and_the_export_has_the_filtered_photos(page: object, album: dict) -> None:
    page.goto(album["url"] + "/")
    page.wait_for_selector("#filters[data-loaded='1']")
    tags = page.eval_on_selector_all("#filters [name=tag] option", "os => os.map(o => o.textContent)")
    assert sorted(tags) == ["any tag", "beach (8)", "paper (10)", "sea (8)", "street (8)"]
    page.click("#list-button")
    page.wait_for_selector("#results .card .chip")
    beach = page.locator("#results .card", has=page.locator(".chip", has_text="sea")).first
    assert beach.locator(".chip").all_inner_texts() == ["beach", "sea"]
    beach.locator(".chip", has_text="sea").click()
    page.wait_for_function("document.querySelector('#filter-summary').textContent.includes('tag: sea')")
    page.wait_for_function(f"document.querySelectorAll('#results .card').length === {PER_FOLDER}")
    assert all("/beach-2023/" in p for p in _cards(page))
    assert page.locator("#viewer[open]").count() == 0  # a chip filters; it does not open the photo
    page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete)")
    page.screenshot(path=str(ARTIFACTS / "tag-filter.png"), full_page=True)
    rows = list(csv.DictReader(io.StringIO(_download(page, "#export-csv"))))
    assert sorted(row["path"] for row in rows) == sorted(_cards(page))
    assert all(row["tags"] == "beach;sea" and row["camera_make"] == "Canon" for row in rows)
    lines = [json.loads(line) for line in _download(page, "#export-jsonl").splitlines()]
    assert sorted(line["path"] for line in lines) == sorted(_cards(page))
    # the filters hold for similar images too: a street photo's neighbours, only among the photos tagged "sea"
    page.set_input_files("#file", str(album["made"]["city-2024"][0]))
    page.wait_for_selector("#similar .card")
    similar = page.eval_on_selector_all("#similar .card", "cards => cards.map(c => c.title)")
    assert len(similar) == PER_FOLDER and all("/beach-2023/" in p for p in similar)


def test_map_filters_and_colour_by_tag(page: object, album: dict) -> None:
    _open_map(page, album)
    page.select_option("#colour-by", "tag")
    page.wait_for_function("document.querySelector('#legend-title').textContent.startsWith('Tags')")
    legend = page.eval_on_selector_all("#legend .label", "ls => ls.map(l => l.textContent)")
    assert sorted(legend) == ["beach", "paper", "street"]  # each photo's best tag
    page.click("#map-filters-panel summary")
    page.wait_for_selector("#map-filters[data-loaded='1']")
    page.select_option("#map-filters [name=folder]", "city-2024")
    page.click("#map-filters button[type=submit]")
    page.wait_for_function("document.querySelector('#map-filter-status').textContent.includes('pass the filters')")
    assert page.inner_text("#map-filter-status") == f"{PER_FOLDER} of {3 * PER_FOLDER + 2} photos pass the filters"
    page.click("#map-mode button[data-mode=box]")
    canvas = settled_box(page)  # the opened filter panel re-flows the page
    _drag(page, [(3, 3), (canvas["width"] - 3, canvas["height"] - 3)])  # the whole map: only the filtered photos
    assert len(_selected(page)) == PER_FOLDER
    page.screenshot(path=str(ARTIFACTS / "map-filtered.png"))
    # the search page's filters come along in the map link
    page.goto(album["url"] + "/map?tag=beach")
    page.wait_for_function("document.querySelector('#map-filter-status').textContent.includes('pass the filters')")
    assert page.inner_text("#map-filter-status").startswith(f"{PER_FOLDER} of ")


def _open_map(page: object, album: dict) -> None:
    page.goto(album["url"] + "/map")
    page.wait_for_selector("body[data-map-ready='1'][data-attributes-ready='1']", timeout=60_000)
    # the side panel (legend, filters) fills in after the map is ready: take the points' screen places only once
    # the map's box has stopped moving, or a drag misses them
    settled_box(page)


def _screen_points(page: object) -> dict[int, tuple[float, float]]:
    """Each point's place on the canvas (CSS pixels from its top left)."""
    ids = page.evaluate("window.vistextMap.data().points.id")
    return {i: tuple(page.evaluate(f"window.vistextMap.screenOf({i})")) for i in ids}


def _drag(page: object, path: list[tuple[float, float]], steps: int = 8, modifier: str | None = None) -> None:
    box = settled_box(page)
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
    """The ids of the photos in the map's selection grid, once their thumbnails are in."""
    page.wait_for_selector("#region:not([hidden])")
    page.wait_for_function("[...document.querySelectorAll('#region-grid img')].every(i => i.complete)")
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
    page.select_option("#colour-by", "folder")
    page.click("#map-mode button[data-mode=lasso]")
    _drag(page, [*triangle, triangle[0]])
    assert _selected(page) == expected
    page.screenshot(path=str(ARTIFACTS / "map-lasso.png"))  # the README's picture of the map selection


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
    copies = [ids for kind, ids in groups if kind == "copies"]
    assert any({id_of[path.resolve()] for path in made[:2]} <= set(ids) for ids in copies), groups
    assert any({id_of[path.resolve()] for path in made[2:]} <= set(ids) for ids in copies), groups
    assert "at similarity 0.85" in page.inner_text("#dup-status")
    page.wait_for_function("[...document.querySelectorAll('#dup-groups img')].every(i => i.complete)")
    page.locator("#duplicates").screenshot(path=str(ARTIFACTS / "duplicates.png"))
    page.fill("#dup-threshold", "0.99")  # stricter: no similar shots are left, the copies stay
    page.click("#dup-button")
    page.wait_for_function("document.querySelector('#dup-status').textContent.includes('0.99')")
    kinds = page.eval_on_selector_all("#dup-groups .dup-group", "gs => gs.map(g => g.dataset.kind)")
    assert kinds and set(kinds) == {"copies"}


def test_explore_routes_over_http(album: dict) -> None:
    """What the map and the duplicates section ask for, as JSON: each photo's folder, tags and metadata
    (filtered like every listing), and the duplicate groups; bad values get a one-line 400."""
    url = album["url"]
    columns = httpx.get(url + "/api/map/attributes").json()
    assert len(columns["id"]) == 3 * PER_FOLDER + 2 and set(columns) >= {"path", "folder", "tags", "taken", "camera"}
    scans = httpx.get(url + "/api/map/attributes", params={"folder": "scans"}).json()
    assert set(scans["folder"]) == {"scans"} and len(scans["id"]) == PER_FOLDER + 2
    assert all(tags == ["paper"] for tags in scans["tags"])
    paris = httpx.get(url + "/api/map/attributes", params={"near": "48.857,2.352,3"}).json()
    assert paris["camera"] == ["FUJIFILM X-T3"] * 3 and all(t.startswith("2024-03-1") for t in paris["taken"])
    bad = httpx.get(url + "/api/map/attributes", params={"near": "paris"})
    assert bad.status_code == 400 and "near" in bad.json()["error"]
    groups = httpx.get(url + "/api/duplicates").json()
    kinds = [g["kind"] for g in groups["groups"]]
    assert groups["threshold"] == 0.85 and kinds[:2] == ["copies", "copies"] and set(kinds) <= {"copies", "similar"}
    assert all(g["keep"] == g["images"][0]["id"] for g in groups["groups"] if g["kind"] == "copies")
    strict = httpx.get(url + "/api/duplicates", params={"threshold": 0.99}).json()
    assert [g["kind"] for g in strict["groups"]] == ["copies", "copies"] and strict["skipped"] == []
    wrong = httpx.get(url + "/api/duplicates", params={"threshold": 2})
    assert wrong.status_code == 400 and "threshold" in wrong.json()["error"]
