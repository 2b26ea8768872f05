"""The web page's model picker in headless Chromium: hidden for a catalogue with only the bundled models, shown
when the catalogue also has a CLIP-family model's space, and a search with it picked answers in that space (the
same photos, in the same order, as ``/api/search?model=``)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from vistext.server import ServerSettings
from vistext.service import Service


@pytest.fixture(scope="module")
def catalogues(
    tmp_path_factory: pytest.TempPathFactory,
    flickr8k_images: list[Path],
    copy_photos: Callable[..., Path],
    tiny_clip: tuple[Path, Any],
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("web-models")
    found = {}
    for name, model in (("plain", None), ("clip", tiny_clip[0])):
        photos = copy_photos(flickr8k_images[300:312], root / name)
        with Service(db=root / f"{name}.sqlite", progress=False) as service:
            service.index(photos, text_search=False, model=model)
        found[name] = root / f"{name}.sqlite"
    return found


def test_no_picker_without_a_second_model(
    page: Any, catalogues: dict[str, Path], running_server: Callable[..., AbstractContextManager[str]]
) -> None:
    with running_server(ServerSettings(db=catalogues["plain"])) as url:
        with page.expect_response(lambda response: "/api/models" in response.url) as answer:
            page.goto(url + "/")
        assert answer.value.json() == {"models": []}
        page.wait_for_function("document.querySelector('#collection').textContent.includes('images')")
        assert page.locator("#model-picker").is_hidden()


def test_picking_the_clip_model_searches_its_space(
    page: Any, catalogues: dict[str, Path], running_server: Callable[..., AbstractContextManager[str]]
) -> None:
    with running_server(ServerSettings(db=catalogues["clip"])) as url:
        expected = httpx.get(f"{url}/api/search", params={"q": "a red bus", "model": "tiny-clip", "k": 5}).json()
        page.goto(url + "/")
        page.wait_for_selector("#model-picker:not([hidden])")
        assert page.locator("#model option").all_inner_texts() == ["bundled (default)", "tiny-clip (32-d)"]
        page.select_option("#model", "tiny-clip")
        page.fill("#q", "a red bus")
        page.fill("#per-page", "5")
        page.click("#search-button")
        # The newest photos are on the page before the search answers; wait for the search's own status and cards.
        page.wait_for_function("document.querySelector('#search-status').textContent.includes('“')")
        page.wait_for_function(f"document.querySelectorAll('#results .card').length === {len(expected['results'])}")
        ids = [int(card.get_attribute("data-id")) for card in page.locator("#results .card").all()]
        assert ids == [hit["id"] for hit in expected["results"]]
