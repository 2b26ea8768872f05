"""Attributes end to end, on real photos: measured at indexing, filled in for a catalogue indexed before them,
used by a search that names them, and the same query through the CLI, the HTTP API and the bot."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from answers import assert_same_results
from conftest import run_async  # asyncio.run in a thread of its own (see conftest)
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from vistext.bot import BotSettings, VistextBot
from vistext.cli.main import main
from vistext.images.attributes import ATTRIBUTE_SPACE, MEASURES
from vistext.server.app import create_app
from vistext.server.settings import ServerSettings
from vistext.service import Service
from vistext.service.composed_search import composed_page
from vistext.service.ordering import ResultPage
from vistext.service.queries import Query, query_maker
from vistext.service.query_syntax import parse_query
from vistext.store.records import VectorHit

OTHERS = ("coffee.png", "astronaut.png", "rocket.jpg", "flower.jpg", "china.jpg")


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory, sample_photos: Path) -> dict[str, Any]:
    """The cat photo in red, in blue and in grey, beside five other photos, indexed."""
    folder = tmp_path_factory.mktemp("attributes") / "photos"
    folder.mkdir()
    with Image.open(sample_photos / "chelsea.png") as cat:
        grey = ImageOps.grayscale(cat.convert("RGB"))
    ImageOps.colorize(grey, black=(40, 0, 0), white=(255, 90, 90)).save(folder / "cat-red.jpg", quality=92)
    ImageOps.colorize(grey, black=(0, 0, 40), white=(90, 120, 255)).save(folder / "cat-blue.jpg", quality=92)
    grey.convert("RGB").save(folder / "cat-grey.jpg", quality=92)
    for name in OTHERS:
        shutil.copy(sample_photos / name, folder / name)
    db = folder.parent / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        report = service.index(folder)
    assert report.added == 8 and report.failed == 0
    return {"db": db, "folder": folder}


def _ranks(service: Service, text: str) -> list[str]:
    return [Path(hit.path).name for hit in service.search(text, 8).results]


def _measures(db: Path) -> dict[str, np.ndarray]:
    with Service(db=db, progress=False) as service:
        return {Path(r.path).name: r.embeddings[ATTRIBUTE_SPACE] for r in service.store().records()}


def test_every_photo_gets_its_measures_at_indexing(catalogue: dict[str, Any]) -> None:
    measures = _measures(catalogue["db"])
    assert len(measures) == 8 and all(m.shape == (len(MEASURES),) for m in measures.values())


def test_a_colour_or_black_and_white_in_the_query_ranks_the_photo_that_has_it(catalogue: dict[str, Any]) -> None:
    cats = ("cat-red.jpg", "cat-blue.jpg", "cat-grey.jpg")
    with Service(db=catalogue["db"], progress=False) as service:
        red = [name for name in _ranks(service, "a red cat") if name in cats]
        blue = [name for name in _ranks(service, "a blue cat") if name in cats]
        grey = [name for name in _ranks(service, "a black and white photo of a cat") if name in cats]
        assert red[0] == "cat-red.jpg" and blue[0] == "cat-blue.jpg" and grey[0] == "cat-grey.jpg"
        # no attribute named: exactly the plain search, and quoting a query turns the syntax off
        plain = service.search("a cat", 8).to_dict()
        assert service.search('"a cat"', 8).to_dict()["results"] == plain["results"]
        assert (
            service.search('"a red cat"', 8).to_dict()["results"] != service.search("a red cat", 8).to_dict()["results"]
        )


def test_an_excluded_thing_sinks_the_photos_that_show_it(catalogue: dict[str, Any]) -> None:
    with Service(db=catalogue["db"], progress=False) as service:
        wanted = {h.id: h.score for h in service.search('"a cat"', 8).results}
        excluded = {h.id: h.score for h in service.search('"a cup of coffee"', 8).results}
        hits = service.search('a cat -"a cup of coffee"', 8).results
        assert len(hits) == 8
        for hit in hits:
            assert hit.score == pytest.approx(wanted[hit.id] * (1 - excluded[hit.id]), abs=1e-6)
        assert [h.id for h in hits] == sorted((h.id for h in hits), key=lambda i: (-wanted[i] * (1 - excluded[i]), i))
        spelled = service.search("a cat without a cup of coffee", 8).to_dict()["results"]
        assert spelled == service.search('a cat -"a cup of coffee"', 8).to_dict()["results"]


def test_a_catalogue_indexed_before_the_measures_gets_them_at_the_next_index(
    catalogue: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(catalogue["folder"], folder)
    db = tmp_path / "db" / "catalogue.sqlite"
    with Service(db=db, progress=False) as service:
        service.index(folder)
    measured = _measures(db)
    with sqlite3.connect(db) as conn:  # as a catalogue from before the measures is
        conn.execute("DELETE FROM embeddings WHERE space = ?", (ATTRIBUTE_SPACE,))
    with Service(db=db, progress=False) as service:
        assert all(ATTRIBUTE_SPACE not in record.embeddings for record in service.store().records())
        report = service.index(folder)
        assert report.attributes_filled == 8 and report.added == report.updated == 0
        again = service.index(folder)
        assert again.attributes_filled == 0  # nothing left to fill: no photo is read again
    filled = _measures(db)
    assert filled.keys() == measured.keys()
    assert all(np.allclose(filled[name], measured[name]) for name in measured)


def test_cli_http_and_bot_pass_the_same_query_through(
    catalogue: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "a red cat without a cup of coffee"
    with Service(db=catalogue["db"], progress=False) as service:
        expected = service.search(text, 3).to_dict()

    assert main(["search", text, "-k", "3", "--db", str(catalogue["db"]), "--json", "--quiet"]) == 0
    assert_same_results(json.loads(capsys.readouterr().out)["results"], expected["results"])

    settings = ServerSettings(db=catalogue["db"])
    with TestClient(create_app(Service, settings), base_url="http://127.0.0.1") as client:
        answer = client.get("/api/search", params={"q": text, "k": 3})
    assert answer.status_code == 200, answer.text
    assert_same_results(answer.json()["results"], expected["results"])

    seen: list[str] = []
    real_search = Service.search

    def recording(self: Service, typed: str, *args: Any, **options: Any) -> Any:
        seen.append(typed)
        return real_search(self, typed, *args, **options)

    monkeypatch.setattr(Service, "search", recording)
    bot = VistextBot(Service(db=catalogue["db"], progress=False), BotSettings(token="123:x", k=3))
    albums: list[Any] = []

    async def send(message: Any, result: Any, empty: str) -> None:
        albums.append(result)

    monkeypatch.setattr(bot, "_send_album", send)
    update = SimpleNamespace(effective_message=SimpleNamespace(text=f"  {text} "))
    run_async(bot.on_text(update, SimpleNamespace()))  # type: ignore[arg-type]
    assert seen == [text]
    assert_same_results(albums[0].to_dict()["results"], expected["results"])


def test_a_composed_page_holds_no_page_thread_while_its_searches_wait(catalogue: dict[str, Any]) -> None:
    """A composed query's steps go on when their searches are answered: meanwhile its page thread serves others."""
    text = 'a cat -"a cup of coffee"'
    with Service(db=catalogue["db"], progress=False) as service:
        collection = service._collection
        expected = service.search(text, 8).to_dict()["results"]
        real, held = collection.queries, []

        class Held:  # the real batcher, whose answers reach the page only when the test lets them
            def submit(self, query: Query) -> Future[list[VectorHit]]:
                future: Future[list[VectorHit]] = Future()
                held.append((real.submit(query), future))
                return future

        def release(count: int) -> None:
            deadline = time.monotonic() + 10
            while len(held) < count and time.monotonic() < deadline:
                time.sleep(0.01)
            answer, future = held[count - 1]
            future.set_result(answer.result(timeout=10))

        space = service._models.text_space
        query_for = query_maker(space)
        parsed = parse_query(text)
        page = ResultPage(text, 8, strong=service._models.strong_score(space))
        with ThreadPoolExecutor(1) as pages:
            result = composed_page(
                collection.store(), Held(), pages, parsed, query_for, query_for(parsed.wanted, 8, None), page,  # type: ignore[arg-type]
                lambda error, _: error,
            )  # fmt: skip
            assert (
                pages.submit(lambda: "free").result(timeout=5) == "free"
            )  # its first search waits: the thread is free
            release(1)  # the wanted text's pool: the page goes on and asks for the excluded thing
            assert pages.submit(lambda: "free").result(timeout=5) == "free"
            assert not result.done()
            release(2)
            assert result.result(timeout=10).to_dict()["results"] == expected


def test_black_and_white_alone_finds_the_grey_photo_and_says_how_sure(catalogue: dict[str, Any]) -> None:
    with Service(db=catalogue["db"], progress=False) as service:
        for text in ("a black and white photo", "monochrome", "photos in black and white"):
            hits = service.search(text, 8).results
            scores = {Path(hit.path).name: hit.score for hit in hits}
            assert Path(hits[0].path).name == "cat-grey.jpg" and scores["cat-grey.jpg"] >= 0.9, text
            assert scores["cat-red.jpg"] < 0.1 and scores["cat-blue.jpg"] < 0.1, text
            assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
