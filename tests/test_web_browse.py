"""The web page as a photo library, in a real headless Chromium: the timeline before any query (newest first,
under month headings, endless scroll), search sorted by relevance or date (kept in the URL), copies folded into
one tile, weak matches dimmed, readable file names, a 390 px wide screen, and the keyboard.

The library is made here from real Flickr8k photos (the 500-px originals) with EXIF dates written with Pillow,
two copies and two long file names. Each test saves its screenshots in its tmp_path and, when the environment
variable VISTEXT_SCREENSHOTS names a folder, there too."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from exif_photos import save_with_exif
from PIL import Image

from vistext.server import ServerSettings
from vistext.service import Service

# photo n of the library is taken in MONTHS[n] (day n + 1), newest month first
MONTHS = ["2024:05"] * 4 + ["2024:03"] * 3 + ["2023:12"] * 3
LONG_NAMES = [
    "Holiday_in_the_mountains_with_the_whole_family_2024-05-03_IMG_0042.jpg",
    "a-very-long-file-name-without-any-spaces-from-a-phone-20240503-120000.jpg",
]
PHONE = {"width": 390, "height": 844}
WIDE = {"width": 1280, "height": 860}


def shoot(page: Any, tmp_path: Path, name: str, full_page: bool = True) -> Path:
    """A screenshot of the page into the test's tmp_path, and into $VISTEXT_SCREENSHOTS when set."""
    page.wait_for_function("[...document.querySelectorAll('img')].every(i => i.complete)")
    out = tmp_path / f"{name}.png"
    page.screenshot(path=str(out), full_page=full_page)
    folder = os.environ.get("VISTEXT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(folder) / out.name)
    return out


@pytest.fixture(scope="module")
def library(
    tmp_path_factory: pytest.TempPathFactory,
    flickr8k_images: list[Path],
    running_server: Callable[..., AbstractContextManager[str]],
    text_search_available: Callable[[], bool],
) -> Iterator[dict[str, Any]]:
    """Ten dated photos over three months (two with long names), an exact copy and a half-size re-encoded copy
    (no EXIF: it sorts by its file's date, set to the same month), served."""
    photos = tmp_path_factory.mktemp("library") / "photos"
    photos.mkdir()
    originals = sorted((flickr8k_images[0].parents[1] / "originals").glob("*.jpg"))[300 : 300 + len(MONTHS)]
    made = []
    for n, (source, month) in enumerate(zip(originals, MONTHS, strict=True)):
        name = LONG_NAMES[n] if n < len(LONG_NAMES) else source.name
        save_with_exif(source, photos / name, f"{month}:{n + 1:02d} 10:00:00", camera=("Canon", "EOS 80D"), quality=90)
        made.append(photos / name)
    shutil.copy(made[2], photos / f"copy-{made[2].name}")
    with Image.open(made[5]) as picture:
        picture.resize((picture.width // 2, picture.height // 2)).save(photos / "small.jpg", quality=75)
    stamp = datetime(2024, 3, 1, tzinfo=UTC).timestamp()
    os.utime(photos / "small.jpg", (stamp, stamp))
    db = photos / ".vistext" / "catalogue.sqlite"
    text = text_search_available()
    with Service(db=db, progress=False) as service:
        service.index(photos, text_search=text)
        id_of = {Path(r.path).name: r.id for r in service.store().records()}
    with running_server(ServerSettings(db=db, warm_up=False)) as url:
        yield {"url": url, "id_of": id_of, "made": made, "text": text}


def _tile_ids(page: Any) -> list[int]:
    return page.eval_on_selector_all("#results .card", "cs => cs.map(c => +c.dataset.id)")


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#results .card")
    page.wait_for_function("!document.querySelector('#more').dataset.loading")


def test_the_first_screen_is_the_timeline_by_month(page: Any, library: dict[str, Any], tmp_path: Path) -> None:
    _open(page, library["url"] + "/")
    months = page.eval_on_selector_all("#results h3.month", "hs => hs.map(h => h.textContent)")
    assert months == ["May 2024", "March 2024", "December 2023"]
    listed = httpx.get(library["url"] + "/api/list", params={"k": 24}).json()["results"]
    assert _tile_ids(page) == [item["id"] for item in listed if "copy_of" not in item]
    assert page.inner_text("#search-status").startswith("12 photos, newest first")
    assert page.locator("#sort-toggle").is_hidden() and page.locator("#pager").is_hidden()
    shoot(page, tmp_path, "timeline-1280")
    page.set_viewport_size(PHONE)
    shoot(page, tmp_path, "timeline-390")


def test_endless_scroll_loads_the_next_pages(page: Any, library: dict[str, Any], tmp_path: Path) -> None:
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/api/list" in request.url else None)
    page.set_viewport_size({"width": 1280, "height": 500})
    _open(page, library["url"] + "/")
    page.fill("#per-page", "3")
    asked.clear()
    page.click("#list-button")
    page.wait_for_function("document.querySelectorAll('#results .card').length >= 3")
    for _ in range(120):  # each scroll to the end brings the next page (a loaded machine answers slowly)
        page.mouse.wheel(0, 5000)
        page.wait_for_timeout(250)
        if page.get_attribute("#more", "data-done") == "1":
            break
    page.wait_for_function("document.querySelector('#more').dataset.done === '1'")
    # Pages of 3, one after another, each from the last one's cursor: not everything at once. (How many tiles
    # show after the first page is a race with the pages that fill the screen, so the requests are checked.)
    pages = [parse_qs(urlsplit(url).query) for url in asked]
    assert len(pages) >= 4 and all(query["k"] == ["3"] for query in pages)
    assert "cursor" not in pages[0] and all("cursor" in query for query in pages[1:])
    tiles = _tile_ids(page)
    assert len(tiles) == 10 == len(set(tiles))  # 12 photos, two of them folded into their originals' tiles
    assert page.eval_on_selector_all("#results h3.month", "hs => hs.length") == 3  # each month once
    shoot(page, tmp_path, "endless-scroll")


def test_copies_fold_into_one_tile(page: Any, library: dict[str, Any], tmp_path: Path) -> None:
    _open(page, library["url"] + "/")
    id_of, made = library["id_of"], library["made"]
    assert id_of[f"copy-{made[2].name}"] not in _tile_ids(page) and id_of["small.jpg"] not in _tile_ids(page)
    badges = page.eval_on_selector_all(
        "#results .card .copies", "bs => bs.map(b => [+b.closest('.card').dataset.id, b.textContent, b.title])"
    )
    by_id = {tile: (text, title) for tile, text, title in badges}
    assert set(by_id) == {id_of[made[2].name], id_of[made[5].name]}
    assert by_id[id_of[made[2].name]][0] == "2 copies" and f"copy-{made[2].name}" in by_id[id_of[made[2].name]][1]
    assert "small.jpg" in by_id[id_of[made[5].name]][1]
    page.locator(f"#results .card[data-id='{id_of[made[5].name]}']").scroll_into_view_if_needed()
    shoot(page, tmp_path, "copies-folded", full_page=False)


def test_search_sorts_by_relevance_or_date_in_the_url(page: Any, library: dict[str, Any], tmp_path: Path) -> None:
    if not library["text"]:
        pytest.skip("no joint model in this checkout: nothing to search with")
    searches: list[str] = []
    page.on("request", lambda request: searches.append(request.url) if "/api/search" in request.url else None)
    _open(page, library["url"] + "/")
    page.fill("#q", "a dog running")
    page.click("#search-button")
    page.wait_for_selector("#sort-toggle:not([hidden])")
    page.wait_for_function("!document.querySelector('#search-button').disabled")
    assert "q=a+dog+running" in page.url and "sort=" not in page.url
    assert page.get_attribute("#sort-toggle [data-sort=relevance]", "aria-pressed") == "true"
    scores = [float(s.split()[0]) for s in page.locator("#results .score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    shoot(page, tmp_path, "search-relevance")
    page.click("#sort-toggle [data-sort=date]")
    page.wait_for_function("location.search.includes('sort=date')")
    page.wait_for_function("!document.querySelector('#search-button').disabled")
    assert "sort=date" in searches[-1]
    answer = httpx.get(library["url"] + "/api/search", params={"q": "a dog running", "k": 24, "sort": "date"}).json()
    assert _tile_ids(page) == [hit["id"] for hit in answer["results"] if "copy_of" not in hit]
    shoot(page, tmp_path, "search-date")
    page.goto(page.url)  # a reload (or a shared link) shows the same search in the same order
    page.wait_for_selector("#results .card")
    assert page.input_value("#q") == "a dog running"
    assert page.get_attribute("#sort-toggle [data-sort=date]", "aria-pressed") == "true"
    assert "sort=date" in searches[-1]


def test_weak_matches_look_weak(page: Any, library: dict[str, Any], tmp_path: Path) -> None:
    if not library["text"]:
        pytest.skip("no joint model in this checkout: no calibrated scores")
    query = "a screenshot of a spreadsheet full of numbers"
    _open(page, library["url"] + "/?q=" + query.replace(" ", "+"))
    page.wait_for_function("document.querySelector('#search-status').textContent.includes('“')")
    answer = httpx.get(library["url"] + "/api/search", params={"q": query, "k": 24}).json()
    weak = {hit["id"] for hit in answer["results"] if hit["score"] < answer["strong_score"]}
    assert weak  # nothing in this library is a spreadsheet
    assert set(page.eval_on_selector_all("#results .card.weak", "cs => cs.map(c => +c.dataset.id)")) <= weak
    card = page.locator("#results .card.weak").first
    assert "weak match" in card.inner_text()
    assert float(card.evaluate("c => getComputedStyle(c).opacity")) < 0.7
    if len(weak) == len(answer["results"]):
        assert page.inner_text("#search-status").startswith(f"no strong match for “{query}”; closest:")
    shoot(page, tmp_path, "weak-matches")


def test_file_names_stay_readable(page: Any, library: dict[str, Any], tmp_path: Path) -> None:
    for size, name in ((WIDE, "names-1280"), (PHONE, "names-390")):
        page.set_viewport_size(size)
        _open(page, library["url"] + "/")
        names = page.eval_on_selector_all(
            "#results .name",
            "ns => ns.map(n => ({title: n.title, text: n.textContent, tail: n.querySelector('.tail').textContent,"
            " fits: n.scrollWidth <= n.clientWidth + 1, lines: Math.round(n.getBoundingClientRect().height /"
            " parseFloat(getComputedStyle(n).lineHeight)), cut: n.querySelector('.head').scrollWidth >"
            " n.querySelector('.head').clientWidth}))",
        )
        assert all(n["title"] == n["text"] and n["fits"] and n["lines"] == 1 for n in names), names
        long = [n for n in names if n["title"] in LONG_NAMES]
        assert len(long) == 2 and all(n["cut"] and n["tail"].endswith(".jpg") for n in long)  # cut in the middle
        shoot(page, tmp_path, name, full_page=False)


def test_the_page_fits_a_390_px_screen(page: Any, library: dict[str, Any], tmp_path: Path) -> None:
    page.set_viewport_size(PHONE)
    _open(page, library["url"] + "/")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for selector in ("header h1", "#map-link", "#token-button", "#collection", "#search-button", "#list-button"):
        box = page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], selector
    assert page.locator("#map-link").is_visible()
    columns = page.evaluate(
        "getComputedStyle(document.querySelector('#results')).gridTemplateColumns.split(' ').length"
    )
    assert columns == 2
    shoot(page, tmp_path, "phone-390")


def test_the_keyboard_reaches_and_opens_photos(page: Any, library: dict[str, Any], tmp_path: Path) -> None:
    _open(page, library["url"] + "/")
    ids = _tile_ids(page)
    for _ in range(80):  # the tab order goes through the header, the forms, then the tiles
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('card')"):
            break
    focused = page.evaluate("+document.activeElement.dataset.id")
    assert focused == ids[0]
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert ring == "solid"
    shoot(page, tmp_path, "focus-ring", full_page=False)
    page.keyboard.press("Enter")
    page.wait_for_selector("#viewer[open]")
    assert page.get_attribute("#viewer", "data-id") == str(ids[0])
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.get_attribute("#viewer", "data-id") == str(ids[2])
    page.keyboard.press("ArrowLeft")
    assert page.get_attribute("#viewer", "data-id") == str(ids[1])
    assert page.inner_text("#viewer-position") == f"2 of {len(ids)}"
    page.wait_for_function("document.querySelector('#viewer-image').complete")
    shoot(page, tmp_path, "viewer-keyboard", full_page=False)
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer:not([open])", state="attached")
    # back on the photo last shown: the dialog's "close" event (a task queued after it closes) moves the focus
    page.wait_for_function(f"+document.activeElement.dataset.id === {ids[1]}", timeout=5000)
