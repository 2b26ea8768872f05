"""The web page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright, see the `browser`
and `page` fixtures in conftest): search, upload, match, the map (served and standalone, and 10k points).
Screenshots land in artifacts/web/."""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from conftest import settled_box  # the map page re-flows as its panels fill in
from PIL import Image

from vistext.errors import VistextError
from vistext.server import ServerSettings
from vistext.server.standalone import map_page, write_map_html
from vistext.service import Service

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "web"  # the browser fixture (conftest) makes it


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
    flickr8k_images: list[Path],
    copy_photos: Callable[..., Path],
    running_server: Callable[..., AbstractContextManager[str]],
    text_search_available: Callable[[], bool],
) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("web")
    photos = copy_photos(flickr8k_images[100:136], root / "photos")
    db = root / "db" / "catalogue.sqlite"
    text = text_search_available()
    with Service(db=db, progress=False) as service:
        service.index(photos, text_search=text)
    bank = root / "captions.txt"  # closest captions for uploads come from this bank
    lines = [
        line.split("\t", 1)[1]
        for line in (flickr8k_images[0].parents[1] / "Flickr8k.token.txt").read_text().splitlines()[:400:4]
    ]
    bank.write_text("\n".join(lines))
    settings = ServerSettings(db=db, map_method="pca", captions=str(bank) if text else None)
    with running_server(settings) as url:
        yield {"url": url, "db": db, "photos": photos, "text": text}


def test_search_box_results_grid_and_paging(page: object, site: dict) -> None:
    page.goto(site["url"] + "/")
    page.fill("#q", "a dog running on the grass")
    page.fill("#per-page", "6")
    page.click("#search-button")
    if site["text"]:
        page.wait_for_function("document.querySelector('#search-status').textContent.includes('“')")
        assert page.locator("#results .card").count() == 6
        scores = [float(s.split()[0]) for s in page.locator("#results .score").all_inner_texts()]
        assert scores == sorted(scores, reverse=True)
        # every file name fits its tile (cut in the middle when too long: test_web_browse.py) and its title says it
        names = page.eval_on_selector_all(
            "#results .name",
            "els => els.map(e => [e.textContent, e.title, e.scrollWidth <= e.clientWidth + 1,"
            " e.scrollHeight <= e.clientHeight + 1])",
        )
        assert names and all(text == title and whole_w and whole_h for text, title, whole_w, whole_h in names), names
        assert all(text.endswith(".jpg") for text, *_ in names)
        loaded = "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth)"
        page.wait_for_function(loaded)
        page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)
        first = page.locator("#results .card").first.get_attribute("data-id")
        page.click("#next")
        page.wait_for_function("document.querySelector('#page-label').textContent === 'page 2'")
        assert page.locator("#results .card").first.get_attribute("data-id") != first
        assert not page.locator("#prev").is_disabled()
        assert page.locator("#understand").is_hidden()
    else:  # no text model in this checkout yet: the page must say why, not hang or crash
        page.wait_for_selector("#search-status.error")
        assert "index" in page.inner_text("#search-status") or "model" in page.inner_text("#search-status")
        page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)


def test_upload_an_image_gets_tags_and_similar_images(page: object, site: dict) -> None:
    photo = sorted(site["photos"].glob("*.jpg"))[3]
    page.goto(site["url"] + "/")
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#tags li")
    page.wait_for_selector("#similar .card")
    assert page.locator("#tags li").count() == 5
    assert page.locator("#similar .card").count() == 9
    if site["text"]:
        page.wait_for_function("document.querySelectorAll('#captions li .s').length === 3")
        assert page.locator("#captions-panel").is_visible()
    top_name = page.locator("#similar .card .name").first.get_attribute("title")
    assert top_name == photo.name  # the photo itself is indexed, so it is its own best match
    page.wait_for_function("document.querySelector('#image-status').textContent.length > 0")
    page.locator("#similar .card img").first.evaluate("img => img.decode()")
    page.screenshot(path=str(ARTIFACTS / "upload.png"), full_page=True)
    page.locator("#similar .card").nth(1).click()
    page.wait_for_selector("#viewer[open] #viewer-similar .card")
    page.screenshot(path=str(ARTIFACTS / "viewer.png"))


def test_match_form(page: object, site: dict) -> None:
    photo = sorted(site["photos"].glob("*.jpg"))[0]
    page.goto(site["url"] + "/#match")
    page.set_input_files("#match-file", str(photo))
    page.fill("#tag-sets", "dog, grass, running\nkitchen, cooking\ncar, street")
    page.click("#match-form button[type=submit]")
    try:  # the same call through the service tells whether this checkout has a model to match with
        with Service(db=site["db"], progress=False) as service:
            service.match(photo, [["dog"], ["car"]])  # type: ignore[attr-defined]
        available = True
    except (AttributeError, VistextError):
        available = False
    if available:
        page.wait_for_selector("#match-result:not([hidden]) tr.best")
        assert page.locator("#match-result tbody tr").count() == 3
    else:  # no model yet: the page shows the server's one-line reason
        page.wait_for_selector("#match-status.error")
        assert "Traceback" not in page.inner_text("#match-status")
    page.screenshot(path=str(ARTIFACTS / "match.png"), full_page=True)


def _hover_and_click_a_point(page: object, image_id: int) -> None:
    x, y = page.evaluate(f"window.vistextMap.screenOf({image_id})")
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.wait_for_selector("#tooltip:not([hidden])")
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_selector("#neighbours .card")


def test_map_page_hover_and_click_shows_neighbours(page: object, site: dict) -> None:
    page.goto(site["url"] + "/map")
    page.wait_for_selector("body[data-map-ready='1']", timeout=60_000)
    assert page.evaluate("window.vistextMap.count()") == 36
    assert page.locator("#legend div").count() >= 2  # coloured by topic
    _hover_and_click_a_point(page, 5)
    page.wait_for_function("document.querySelector('#tooltip-image').complete")
    page.screenshot(path=str(ARTIFACTS / "map.png"))
    assert page.locator("#neighbours .card").count() == 9


def test_standalone_map_works_from_a_file(page: object, site: dict, tmp_path: Path) -> None:
    with Service(db=site["db"], progress=False) as service:
        out = write_map_html(service, tmp_path / "map.html", method="pca")
    page.goto(out.as_uri())
    page.wait_for_selector("body[data-map-ready='1']")
    _hover_and_click_a_point(page, 7)
    assert page.locator("#neighbours .card").count() == 9
    assert page.locator("#tooltip-image").get_attribute("src").startswith("data:image/jpeg")
    page.screenshot(path=str(ARTIFACTS / "map-standalone.png"))
    # without a server: no filters and no tags, but folders (from the files' paths), selection and export work
    assert page.locator("#map-filters-panel").is_hidden()
    assert page.locator("#colour-by option[value=tag]").is_disabled()
    page.select_option("#colour-by", "folder")
    assert page.locator("#legend .label").all_inner_texts() == ["(top folder)"]
    page.click("#map-mode button[data-mode=box]")
    # the neighbour cards' images arrive late on a busy machine and re-flow the page: read the map's box once
    # they are in and the layout has settled, or the drag can start outside the map and select nothing
    page.wait_for_function("[...document.querySelectorAll('#neighbours img')].every(i => i.complete)")
    box = settled_box(page)
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2, steps=5)
    page.mouse.up()
    page.wait_for_function("document.querySelector('#region-count').textContent !== ''")  # drawn on the next frame
    assert page.inner_text("#region-count") == "36 photos selected"
    with page.expect_download() as download:
        page.click("#region-jsonl")
    lines = Path(download.value.path()).read_text().splitlines()
    assert len(lines) == 36 and all(json.loads(line)["path"].endswith(".jpg") for line in lines)


def test_map_with_10k_points_stays_responsive(page: object, tmp_path: Path) -> None:
    """10k points: the page draws them, and hover and zoom answer without freezing the page."""
    rng = random.Random(0)
    n = 10_000
    data = {
        "method": "tsne",
        "key": "synthetic",
        "count": n,
        "points": {
            "id": list(range(1, n + 1)),
            "x": [rng.random() for _ in range(n)],
            "y": [rng.random() for _ in range(n)],
            "name": [f"photo-{i}.jpg" for i in range(1, n + 1)],
            "topic": [rng.randrange(8) for _ in range(n)],
        },
        "topics": [{"id": t, "words": [f"word{t}a", f"word{t}b"]} for t in range(8)],
        "neighbours": {},
        "files": {},
    }
    html = map_page(data)
    (tmp_path / "big.html").write_text(html)
    started = time.monotonic()
    page.goto((tmp_path / "big.html").as_uri())
    page.wait_for_selector("body[data-map-ready='1']")
    ready = time.monotonic() - started
    # one full redraw, measured inside the page
    draw_ms = page.evaluate(
        "() => new Promise(r => { const t = performance.now(); window.dispatchEvent(new Event('resize'));"
        " requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now() - t))); })"
    )
    box = page.locator("#map").bounding_box()
    started = time.monotonic()
    for step in range(20):
        page.mouse.move(box["x"] + 100 + step * 20, box["y"] + 100 + step * 15)
    page.mouse.wheel(0, -300)
    hover_s = time.monotonic() - started
    assert page.evaluate("window.vistextMap.count()") == n
    assert page.locator("#tooltip:not([hidden])").count() == 1
    page.screenshot(path=str(ARTIFACTS / "map-10k.png"))
    print(f"10k-point map: ready in {ready:.2f} s, redraw {draw_ms:.0f} ms, 20 hovers + zoom {hover_s:.2f} s")
    shutil.copy(tmp_path / "big.html", ARTIFACTS / "map-10k.html")


def test_page_asks_for_the_token_and_then_works(
    page: object, site: dict, running_server: Callable[..., AbstractContextManager[str]]
) -> None:
    with running_server(ServerSettings(db=site["db"], token="web-token")) as url:
        page.on("dialog", lambda dialog: dialog.accept("web-token"))
        page.goto(url + "/")  # /api/info answers 401: the page asks for the token once
        page.wait_for_function("localStorage.getItem('vistext-token') === 'web-token'")
        page.set_input_files("#file", str(sorted(site["photos"].glob("*.jpg"))[1]))
        page.wait_for_selector("#similar .card")
        # thumbnails cannot carry the header as <img src>: they arrive as blob URLs fetched with the token
        page.wait_for_function(
            "[...document.querySelectorAll('#similar .card img')].some(i => i.src.startsWith('blob:') && i.complete)"
        )
        page.wait_for_selector("#tags li")  # tags and similar images load in parallel: wait for both
        assert page.locator("#tags li").count() == 5
        page.screenshot(path=str(ARTIFACTS / "token.png"))


class SlowWarmUpService(Service):
    """A service whose warm-up search takes 3 s longer, so the page can be seen while the server warms."""

    def search(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        time.sleep(3)
        return super().search(*args, **kwargs)  # type: ignore[arg-type]


def test_page_says_loading_models_while_the_server_warms(
    page: object, site: dict, running_server: Callable[..., AbstractContextManager[str]]
) -> None:
    if not site["text"]:
        pytest.skip("no joint model: the server has no text model to warm")
    with running_server(ServerSettings(db=site["db"]), SlowWarmUpService) as url:
        page.goto(url + "/")  # the timeline shows at once; a line above it says the text model is loading
        page.wait_for_function("document.querySelector('#models-status').textContent.startsWith('loading models')")
        page.wait_for_selector("#results .card")
        page.screenshot(path=str(ARTIFACTS / "warming.png"))
        ready = "document.querySelector('#models-status').textContent === 'models loaded: ready to search'"
        page.wait_for_function(ready, timeout=60_000)  # the page polls /api/status until the models are in
        page.screenshot(path=str(ARTIFACTS / "warmed.png"))
        page.fill("#q", "a dog")
        page.click("#search-button")
        page.wait_for_function("document.querySelector('#search-status').textContent.includes('“')")
        page.goto(url + "/")  # once warm, the page says nothing about models
        page.wait_for_function("document.querySelector('#collection').textContent.includes('images indexed')")
        assert page.inner_text("#models-status") == ""


def test_a_query_of_only_spaces_asks_for_words_and_sends_nothing(page: object, site: dict) -> None:
    searches: list[str] = []
    page.on("request", lambda request: searches.append(request.url) if "/api/search" in request.url else None)
    page.goto(site["url"] + "/")
    page.wait_for_function("document.querySelector('#search-status').textContent.includes('newest first')")
    page.fill("#q", "    ")
    page.click("#search-button")
    page.wait_for_selector("#search-status.error")
    assert page.inner_text("#search-status") == "type some words to search for"
    page.screenshot(path=str(ARTIFACTS / "blank-query.png"))
    assert searches == []


def test_without_a_caption_bank_the_page_shows_composed_captions(
    page: object, site: dict, running_server: Callable[..., AbstractContextManager[str]]
) -> None:
    requests: list[str] = []
    console: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
    with running_server(ServerSettings(db=site["db"], warm_up=False)) as url:
        page.goto(url + "/")
        page.wait_for_function("document.querySelector('#collection').textContent.includes('images indexed')")
        page.set_input_files("#file", str(sorted(site["photos"].glob("*.jpg"))[2]))
        page.wait_for_selector("#tags li")
        page.wait_for_selector("#similar .card")
        page.wait_for_function("document.querySelector('#image-status').textContent.endsWith('done')")
        page.wait_for_function("document.querySelectorAll('#captions li .s').length === 3")
        assert page.locator("#captions-panel").is_visible()
        page.screenshot(path=str(ARTIFACTS / "upload-composed-captions.png"), full_page=True)
    assert [u for u in requests if "/api/caption" in u]
    assert console == []  # no failed request (a 400, a 404 favicon) reaches the console


def test_the_pages_have_an_icon(page: object, site: dict, tmp_path: Path) -> None:
    failed: list[str] = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    for path in ("/", "/map"):
        page.goto(site["url"] + path)
        icon = page.get_attribute("link[rel=icon]", "href")
        assert icon.startswith("data:image/svg+xml")  # inline: no request, works in the standalone map too
    answer = page.evaluate(
        "fetch('/favicon.ico').then(async r => [r.status, r.headers.get('content-type'), (await r.blob()).size])"
    )
    assert answer[0] == 200 and answer[1] == "image/x-icon" and 0 < answer[2] < 20_000
    assert failed == []
    with Service(db=site["db"], progress=False) as service:
        out = write_map_html(service, tmp_path / "map.html", method="pca", embed_thumbnails=False)
    assert 'rel="icon" href="data:image/svg+xml' in out.read_text()


@pytest.fixture(scope="module")
def small_photos(
    tmp_path_factory: pytest.TempPathFactory,
    flickr8k_images: list[Path],
    copy_photos: Callable[..., Path],
    running_server: Callable[..., AbstractContextManager[str]],
) -> Iterator[dict]:
    """12 Flickr8k photos and two small ones (90 x 60 and 60 x 90 px) made from others, served."""
    root = tmp_path_factory.mktemp("small")
    photos = copy_photos(flickr8k_images[200:212], root / "photos")
    small = []
    for i, size in enumerate([(90, 60), (60, 90)]):
        with Image.open(flickr8k_images[300 + i]) as picture:
            path = photos / f"small-{size[0]}x{size[1]}.jpg"
            picture.convert("RGB").resize(size).save(path, quality=90)
            small.append(path)
    db = root / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        service.index(photos, text_search=False)
    with running_server(ServerSettings(db=db, map_method="pca", warm_up=False)) as url:
        yield {"url": url, "small": small}


def test_small_photos_are_not_blown_up(page: object, small_photos: dict) -> None:
    url, small = small_photos["url"], small_photos["small"][0]
    page.goto(url + "/")
    page.set_input_files("#file", str(small))
    page.wait_for_selector("#similar .card")
    assert page.locator("#similar .card .name").first.get_attribute("title") == small.name
    first = page.locator("#similar .card img").first
    first.evaluate("img => img.decode()")
    page.wait_for_function("document.querySelector('#similar .card img').classList.contains('small')")
    shown = first.evaluate("img => [img.naturalWidth, img.naturalHeight, getComputedStyle(img).objectFit]")
    assert shown == [90, 60, "scale-down"]  # the 90 x 60 thumbnail at its own size, centred in its cell
    page.locator("#preview").evaluate("img => img.decode()")
    box = page.locator("#preview").bounding_box()
    assert (round(box["width"]), round(box["height"])) == (90, 60)  # the upload's preview too
    page.wait_for_selector("#tags li")
    page.screenshot(path=str(ARTIFACTS / "small-similar.png"), full_page=True)
    page.locator("#similar .card").first.click()  # the viewer: the original at its own size
    page.wait_for_selector("#viewer[open] #viewer-similar .card")
    page.locator("#viewer-image").evaluate("img => img.decode()")
    box = page.locator("#viewer-image").bounding_box()
    assert (round(box["width"]), round(box["height"])) == (90, 60)
    page.screenshot(path=str(ARTIFACTS / "small-viewer.png"))
    # the map's neighbour view: the selected photo at its own size, not stretched over the panel
    image_id = httpx.post(
        url + "/api/similar", files={"file": (small.name, small.read_bytes(), "image/jpeg")}, params={"k": 1}
    ).json()["results"][0]["id"]
    page.goto(url + "/map")
    page.wait_for_selector("body[data-map-ready='1']", timeout=60_000)
    page.evaluate(f"window.vistextMap.select({image_id})")
    page.wait_for_selector("#neighbours .card")
    page.locator("#selection img.full").evaluate("img => img.decode()")
    box = page.locator("#selection img.full").bounding_box()
    assert (round(box["width"]), round(box["height"])) == (90, 60)
    page.screenshot(path=str(ARTIFACTS / "small-map.png"))
