"""The collection newest first (date taken, else the file's time) with cursor paging, in both store backends;
copies on one page folded by content and perceptual hash; search sorted by date; each through the service and
over HTTP on loopback. The browser side is in test_web_browse.py."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from exif_photos import save_with_exif
from PIL import Image

from vistext.cli.main import main
from vistext.errors import UsageError
from vistext.photo_meta import PhotoMeta
from vistext.server import ServerSettings
from vistext.service import Service
from vistext.service.ordering import newest_matches
from vistext.store import open_store
from vistext.store.records import ImageFilter, VectorHit

# record i of make_records: taken on day TAKEN[i] of 2024 (None: no date taken, so its file time counts)
DAY = 86_400.0
JAN_2024 = 1_704_067_200.0
TAKEN = [JAN_2024 + 40 * DAY, None, JAN_2024 + 5 * DAY, JAN_2024 + 40 * DAY, None, JAN_2024 + 200 * DAY]


def test_newest_first_by_date_taken_else_file_time(store_location: Path | str, make_records: Callable) -> None:
    records, _ = make_records(len(TAKEN))
    for record, taken in zip(records, TAKEN, strict=True):
        record.meta = PhotoMeta(taken_at=taken, width=640, height=480, latitude=48.85, longitude=2.35)
    records[1].mtime = JAN_2024 + 100 * DAY  # between the photos of February and July
    records[4].mtime = JAN_2024 - 300 * DAY  # the oldest of all
    with open_store(store_location) as store:
        store.add(records)
        id_of = {Path(r.path).name: r.id for r in store.records()}
        order = [id_of[f"{i:05d}.jpg"] for i in (5, 1, 0, 3, 2, 4)]  # same day (0 and 3): the first indexed first
        everything = store.newest_first(ImageFilter(), 10)
        assert [i for i, _ in everything] == order
        assert everything[1][1] == pytest.approx(JAN_2024 + 100 * DAY)
        # cursor pages (the last (date, id) shown) and offset pages give the same order
        first = store.newest_first(ImageFilter(), 2)
        second = store.newest_first(ImageFilter(), 2, after=(first[-1][1], first[-1][0]))
        third = store.newest_first(ImageFilter(), 2, after=(second[-1][1], second[-1][0]))
        assert [i for i, _ in first + second + third] == order
        assert store.newest_first(ImageFilter(), 2, offset=2) == second
        # filters hold, the near circle included (after its bounding box)
        assert [i for i, _ in store.newest_first(ImageFilter(after=JAN_2024 + 10 * DAY), 10)] == [order[0], *order[2:4]]
        assert [i for i, _ in store.newest_first(ImageFilter(near=(48.85, 2.35, 5.0)), 3, offset=1)] == order[1:4]
        assert store.newest_first(ImageFilter(near=(0.0, 0.0, 5.0)), 3) == []
        assert store.photo_dates([order[0], order[-1], 999]) == dict([everything[0], everything[-1]])
        # a search sorted by date: its strong hits newest first, the weak ones left out; none strong: as found
        hits = [VectorHit(i, "", score) for i, score in zip(order[::-1], (0.9, 0.8, 0.7, 0.3, 0.2, 0.6), strict=True)]
        assert [h.id for h in newest_matches(store, hits, 0.5)] == [order[0], order[3], order[4], order[5]]
        assert newest_matches(store, hits, 0.95) == hits
        same_day_best_first = [order[0], order[1], order[3], order[2], order[4], order[5]]
        assert [h.id for h in newest_matches(store, hits, None)] == same_day_best_first


def test_bad_cursor_and_sort_are_one_line_errors() -> None:
    from vistext.service.ordering import cursor_text, parse_cursor, parse_sort

    assert parse_cursor(cursor_text(1_700_000_000.123456, 42)) == (1_700_000_000.123456, 42)
    for bad in ("", "yesterday", "12:ab", "nan:3", "1.5:0"):
        with pytest.raises(UsageError, match="cursor: give the next_cursor of a previous page"):
            parse_cursor(bad)
    assert parse_sort(" Date ") == "date"
    with pytest.raises(UsageError, match="sort must be one of relevance, date, got 'newest'"):
        parse_sort("newest")


@pytest.fixture(scope="module")
def library(
    tmp_path_factory: pytest.TempPathFactory,
    sample_photos: Path,
    running_server: Callable[..., AbstractContextManager[str]],
    text_search_available: Callable[[], bool],
) -> Iterator[dict[str, Any]]:
    """Six real photos taken on known days (EXIF), two without a date, an exact copy and a half-size copy."""
    folder = tmp_path_factory.mktemp("timeline") / "photos"
    folder.mkdir()
    dated = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "china.jpg", "flower.jpg"]
    for n, name in enumerate(dated):
        save_with_exif(sample_photos / name, folder / f"{Path(name).stem}.jpg", f"2024:{n + 1:02d}:15 12:00:00")
    for name in ("motorcycle_left.png", "coins.png"):
        shutil.copy(sample_photos / name, folder / name)
    shutil.copy(folder / "flower.jpg", folder / "flower-copy.jpg")  # the same bytes
    with Image.open(folder / "china.jpg") as picture:  # re-encoded at half size: a copy by perceptual hash
        picture.resize((picture.width // 2, picture.height // 2)).save(folder / "china-small.jpg", quality=70)
    for name, when in (("motorcycle_left.png", 2025_02), ("coins.png", 2025_01), ("china-small.jpg", 2023_06)):
        stamp = datetime(when // 100, when % 100, 1, tzinfo=UTC).timestamp()  # no date taken: the file's time counts
        os.utime(folder / name, (stamp, stamp))
    db = folder / ".vistext" / "catalogue.sqlite"
    text = text_search_available()
    with Service(db=db, progress=False) as service:
        service.index(folder, text_search=text)
    with running_server(ServerSettings(db=db, warm_up=False)) as url:
        yield {"db": db, "url": url, "text": text}


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [Path(item["path"]).name for item in items]


def test_the_listing_is_newest_first_and_folds_copies(library: dict[str, Any]) -> None:
    with Service(db=library["db"], progress=False) as service:
        listed = service.list_images(k=20).to_dict()
        names = _names(listed["results"])
        # the photos without a date taken sort by their file's time
        assert names[:2] == ["motorcycle_left.png", "coins.png"]
        assert sorted(names[2:4]) == ["flower-copy.jpg", "flower.jpg"]
        assert names[4:] == ["china.jpg", "astronaut.jpg", "rocket.jpg", "coffee.jpg", "chelsea.jpg", "china-small.jpg"]
        assert listed["order"].startswith("newest first") and listed["next_cursor"] is None
        by_name = {Path(item["path"]).name: item for item in listed["results"]}
        assert by_name["chelsea.jpg"]["date"].startswith("2024-01-15") and by_name["chelsea.jpg"]["dated_by"] == "taken"
        assert by_name["coins.png"]["dated_by"] == "file"
        _check_copies(listed["results"])
        # cursor paging walks the same order; the hashes were cached by the first page that needed them
        walked: list[str] = []
        cursor = None
        while True:
            page = service.list_images(k=3, cursor=cursor).to_dict()
            walked += _names(page["results"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert walked == names
        assert len(service.store().picture_hashes([r.sha for r in service.store().records()])) == 9


def test_list_and_search_over_http(library: dict[str, Any]) -> None:
    url = library["url"]
    first = httpx.get(url + "/api/list", params={"k": 4}).json()
    second = httpx.get(url + "/api/list", params={"k": 4, "cursor": first["next_cursor"]}).json()
    assert first["total"] == 10 and second["total"] is None and len(second["results"]) == 4
    assert _names(second["results"]) == ["china.jpg", "astronaut.jpg", "rocket.jpg", "coffee.jpg"]
    bad = httpx.get(url + "/api/list", params={"cursor": "soon"})
    assert bad.status_code == 400 and "cursor" in bad.json()["error"]
    wrong = httpx.get(url + "/api/search", params={"q": "a cat", "sort": "newest"})
    assert wrong.status_code == 400 and "sort" in wrong.json()["error"]
    if not library["text"]:
        return
    best = httpx.get(url + "/api/search", params={"q": "a flower", "k": 10}).json()
    assert best["strong_score"] == 0.5 and "sort" not in best and len(best["results"]) == 10
    _check_copies(best["results"])
    dated = httpx.get(url + "/api/search", params={"q": "a photo of a flower", "k": 10, "sort": "date"}).json()
    assert dated["sort"] == "date"
    scores = [hit["score"] for hit in dated["results"]]
    if any(score >= 0.5 for score in scores):  # the strong matches only, newest first, as listed
        assert min(scores) >= 0.5
        date_of = {_names([item])[0]: item["date"] for item in httpx.get(url + "/api/list").json()["results"]}
        dates = [date_of[name] for name in _names(dated["results"])]
        assert dates == sorted(dates, reverse=True)
    else:  # nothing strong: the closest, best first
        assert scores == sorted(scores, reverse=True)


def _check_copies(hits: list[dict[str, Any]]) -> None:
    """Of each pair of copies, the one shown later names the one shown first."""
    ids = {Path(hit["path"]).name: hit["id"] for hit in hits}
    position = {Path(hit["path"]).name: n for n, hit in enumerate(hits)}
    for pair in (("flower.jpg", "flower-copy.jpg"), ("china.jpg", "china-small.jpg")):
        first, later = sorted(pair, key=position.__getitem__)
        copy_of = {Path(hit["path"]).name: hit.get("copy_of") for hit in hits}
        assert copy_of[later] == ids[first] and copy_of[first] is None
    assert sum("copy_of" in hit for hit in hits) == 2


def test_the_cli_pages_by_cursor_and_sorts_a_search_by_date(
    library: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(library["db"])
    assert main(["list", "--db", db, "-k", "4", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["list", "--db", db, "-k", "4", "--cursor", first["next_cursor"], "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert _names(second["results"]) == ["china.jpg", "astronaut.jpg", "rocket.jpg", "coffee.jpg"]
    assert main(["list", "--db", db, "--cursor", "soon"]) == 2
    assert "cursor: give the next_cursor of a previous page" in capsys.readouterr().err
    if library["text"]:
        assert main(["search", "a flower", "--db", db, "-k", "10", "--sort", "date", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["sort"] == "date"
