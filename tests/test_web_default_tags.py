"""The web page's existing tag filter offers the tags `vistext index` gives with no training, and applies them
(in a real browser; this file sorts after every test that runs its own asyncio loop, as the browser keeps one)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from vistext.server import ServerSettings
from vistext.service import Service


@pytest.fixture
def photos(tmp_path: Path, opendomain_classes: Path, copy_photos: Callable[..., Path]) -> Path:
    """Seven real photos: dogs and pizzas from opendomain-classes."""
    folder = tmp_path / "photos"
    for name, n in {"dog": 4, "pizza": 3}.items():
        copy_photos(sorted((opendomain_classes / name).glob("*.jpg"))[:n], folder)
    return folder


def test_the_web_pages_tag_filter_offers_and_applies_default_tags(
    photos: Path, page: Any, running_server: Callable[..., AbstractContextManager[str]]
) -> None:
    db = photos / ".vistext" / "catalogue.sqlite"
    with Service(db, progress=False) as service:
        service.index(photos, text_search=False)
        counts = service.tag_counts()
    assert counts.get("dog", 0) >= 3
    with running_server(ServerSettings(db=db, warm_up=False)) as url:
        page.goto(url + "/")
        page.wait_for_selector("#filters[data-loaded='1']")
        options = page.eval_on_selector_all("#filters [name=tag] option", "os => os.map(o => o.textContent)")
        assert f"dog ({counts['dog']})" in options and f"pizza ({counts['pizza']})" in options
        page.select_option("#filters [name=tag]", "dog")
        with page.expect_response(lambda r: "/api/list" in r.url or "/api/search" in r.url):
            page.click("#filters-apply")
        page.wait_for_function("!document.querySelector('#search-button').disabled")
        cards = page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.title)")
        assert len(cards) == counts["dog"] and all(Path(card).name.startswith("dog_") for card in cards)
