"""Text in photos end to end: real photos with a sign rendered on them and a document-like picture, indexed with
``--ocr`` by the real OCR engine (RapidOCR, the [ocr] extra) into SQLite and PostgreSQL, found by a word on the
sign through the CLI and HTTP on loopback, the has-text filter, the setting remembered by the catalogue, a photo
the OCR step cannot read, and catalogues made before the text table upgrading."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw, ImageFont

from vistext.cli import main
from vistext.store import open_store
from vistext.store.photo_text import query_words
from vistext.store.records import ImageFilter

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Debian's DejaVu when installed, else the font Pillow ships (drawn by FreeType at any size)
    return ImageFont.truetype(str(FONT), size) if FONT.is_file() else ImageFont.load_default(size)


def _sign(photo: Path, out: Path, lines: list[str], size: int = 44) -> Path:
    """``photo`` with a white sign bearing ``lines`` in red near its top left, saved as a JPEG at ``out``."""
    picture = Image.open(photo).convert("RGB")
    draw = ImageDraw.Draw(picture)
    font = _font(size)
    width = max(int(draw.textlength(line, font=font)) for line in lines)
    draw.rectangle([20, 20, 50 + width, 40 + len(lines) * int(size * 1.25)], fill="white")
    for row, line in enumerate(lines):
        draw.text((35, 30 + row * int(size * 1.25)), line, font=font, fill=(200, 0, 0))
    picture.save(out, quality=90)
    return out


def _document(out: Path) -> Path:
    """A screenshot-like picture: dark text lines on a plain light background."""
    picture = Image.new("RGB", (900, 420), (246, 246, 240))
    draw = ImageDraw.Draw(picture)
    for row, line in enumerate(["INVOICE 4711", "Delivery to Berlin", "Total due: 129 EUR"]):
        draw.text((40, 40 + row * 110), line, font=_font(56), fill=(20, 20, 20))
    picture.save(out)
    return out


@pytest.fixture(scope="module")
def text_photos(real_jpegs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two plain real photos, one with an "OPEN 24 HOURS" sign on it, and a document-like picture."""
    folder = tmp_path_factory.mktemp("text-photos")
    for photo in real_jpegs[1:3]:
        shutil.copy(photo, folder / photo.name)
    _sign(real_jpegs[0], folder / "sign.jpg", ["OPEN 24", "HOURS"])
    _document(folder / "invoice.png")
    return folder


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json", "--quiet"])
    return code, json.loads(capsys.readouterr().out)


def _names(result: dict[str, Any]) -> list[str]:
    return [Path(hit["path"]).name for hit in result["results"]]


@pytest.fixture
def needs_text_search(text_search_available: Callable[[], bool], require: Callable[[bool, str], None]) -> None:
    require(text_search_available(), "no joint image-text model in this checkout: text search needs one")


def _index_and_search(capsys: pytest.CaptureFixture[str], folder: Path, db: str) -> None:
    """Index ``folder`` with --ocr into ``db``, then find the sign and the invoice by words written on them."""
    code, report = run_json(capsys, "index", str(folder), "--ocr", "--db", db)
    assert code == 0 and report["added"] == 4 and report["failed"] == 0
    assert report["text"]["read"] == 4 and report["text"]["with_text"] >= 2 and not report["text"]["failed"]
    code, result = run_json(capsys, "search", "open 24 hours", "--db", db, "-k", "3")
    first = result["results"][0]
    assert code == 0 and Path(first["path"]).name == "sign.jpg", result
    assert first["text_match"] == 1.0 and first["score"] >= 0.9
    assert "OPEN" in first["text"] and "HOURS" in first["text"]
    code, result = run_json(capsys, "search", "invoice berlin", "--db", db, "-k", "2")
    assert _names(result)[0] == "invoice.png" and "INVOICE" in result["results"][0]["text"], result
    code, listed = run_json(capsys, "list", "--has-text", "--db", db)
    assert code == 0 and {Path(item["path"]).name for item in listed["results"]} >= {"sign.jpg", "invoice.png"}
    assert all(item["text"] for item in listed["results"])
    assert main(["export", "--has-text", "--db", db, "--format", "csv"]) == 0
    exported = capsys.readouterr().out.splitlines()
    assert exported[0].endswith(",orientation,text") and any("HOURS" in line for line in exported[1:]), exported


def test_index_with_ocr_then_search_by_a_word_on_the_sign(
    capsys: pytest.CaptureFixture[str], text_photos: Path, tmp_path: Path, needs_text_search: None
) -> None:
    db = str(tmp_path / "catalogue.sqlite")
    _index_and_search(capsys, text_photos, db)
    assert main(["search", "hours", "--db", db, "-k", "1"]) == 0  # the readable form says why the photo matched
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("sign.jpg") and out[1].strip().startswith("text: OPEN"), out
    code, result = run_json(capsys, "search", "a photo", "--has-text", "--db", db, "-k", "10")
    plain = {p.name for p in text_photos.glob("*.jpg")} - {"sign.jpg"}
    assert code == 0 and result["results"] and not plain & set(_names(result)), result


def test_search_and_the_has_text_filter_over_http(
    text_photos: Path, tmp_path: Path, running_server: Callable[..., Any], needs_text_search: None
) -> None:
    from vistext.server import ServerSettings

    db = tmp_path / "catalogue.sqlite"
    assert main(["index", str(text_photos), "--ocr", "--db", str(db), "--quiet"]) == 0
    with running_server(ServerSettings(db=db, warm_up=False)) as url:
        answer = httpx.get(f"{url}/api/search", params={"q": "open 24 hours", "k": 2}, timeout=120).json()
        assert Path(answer["results"][0]["path"]).name == "sign.jpg", answer
        assert "HOURS" in answer["results"][0]["text"] and answer["results"][0]["text_match"] == 1.0
        with_text = httpx.get(f"{url}/api/list", params={"has_text": "true"}, timeout=60).json()
        without = httpx.get(f"{url}/api/list", params={"has_text": "false"}, timeout=60).json()
        assert {"sign.jpg", "invoice.png"} <= {Path(item["path"]).name for item in with_text["results"]}
        assert with_text["total"] + without["total"] == 4
        assert "sign.jpg" not in {Path(item["path"]).name for item in without["results"]}
        bad = httpx.get(f"{url}/api/list", params={"has_text": "perhaps"}, timeout=60)
        assert bad.status_code in (400, 422) and "has_text" in bad.text


def test_postgres_full_text_finds_the_sign(
    capsys: pytest.CaptureFixture[str], text_photos: Path, pg_url: str, needs_text_search: None
) -> None:
    _index_and_search(capsys, text_photos, pg_url)
    with open_store(pg_url) as store:
        assert len(store.ids_matching(ImageFilter(has_text=True))) >= 2
        assert store.photo_texts_to_read() == {}  # every photo's text was read: a second run reads none


def test_ocr_is_remembered_until_turned_off(
    capsys: pytest.CaptureFixture[str], real_jpegs: list[Path], tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(real_jpegs[1], folder / "plain.jpg")
    db = str(tmp_path / "catalogue.sqlite")
    code, report = run_json(capsys, "index", str(folder), "--db", db)
    assert code == 0 and report["text"] is None  # off for a new catalogue
    code, report = run_json(capsys, "index", str(folder), "--db", db, "--ocr")
    assert report["text"]["read"] == 1  # the photo indexed before is read now
    _sign(real_jpegs[2], folder / "exit.jpg", ["EMERGENCY EXIT"])
    code, report = run_json(capsys, "index", str(folder), "--db", db)  # no --ocr: the catalogue remembers
    assert code == 0 and report["added"] == 1 and report["text"]["read"] == 1 and report["text"]["with_text"] == 1
    with open_store(db) as store:
        texts = store.photo_texts(store.ids_matching(ImageFilter(has_text=True)).tolist())
        assert any("EXIT" in text for text in texts.values()), texts
    _sign(real_jpegs[3], folder / "stop.jpg", ["STOP"])
    code, report = run_json(capsys, "index", str(folder), "--db", db, "--no-ocr")
    assert code == 0 and report["added"] == 1 and report["text"] is None
    code, report = run_json(capsys, "index", str(folder), "--db", db)
    assert report["text"] is None  # off stays off
    with open_store(db) as store:
        assert len(store.photo_texts_to_read()) == 1  # stop.jpg, waiting for --ocr
    code, info = run_json(capsys, "info", "--db", db)
    assert info["metadata"]["text"] == {"ocr": False, "with_text": 1, "unread": 1}
    assert main(["info", "--db", db]) == 0
    assert "text:      not read any more (--no-ocr); 1 photos hold text, 1 not read yet" in capsys.readouterr().out


def test_a_photo_the_ocr_step_cannot_read_is_a_warning_and_stays_indexed(
    real_jpegs: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from vistext.indexing.photo_text import read_texts
    from vistext.models.ocr import TextReader

    folder = tmp_path / "photos"
    folder.mkdir()
    sign = _sign(real_jpegs[0], folder / "sign.jpg", ["BAKERY"])
    broken = folder / "broken.jpg"
    shutil.copy(real_jpegs[1], broken)
    db = tmp_path / "catalogue.sqlite"
    assert main(["index", str(folder), "--db", str(db), "--quiet"]) == 0
    broken.write_bytes(broken.read_bytes()[:400])  # the file is cut short after it was indexed
    with open_store(db) as store, caplog.at_level(logging.WARNING):
        report = read_texts(store, TextReader(), progress=False)
        assert report.read == 1 and report.with_text == 1
        assert [path for path, _ in report.failures] == [str(broken)]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and warnings[0].startswith(f"{broken}: text not read") and "\n" not in warnings[0]
        record = store.get(str(broken))
        assert record is not None and record.status == "ok"  # still indexed, searchable by its picture
        assert set(store.photo_texts_to_read().values()) == {str(broken)}  # tried again next run
        assert "BAKERY" in store.photo_texts([store.get(str(sign)).id]).popitem()[1]  # type: ignore[union-attr]


def test_a_sqlite_catalogue_from_before_the_text_table_upgrades(tmp_path: Path, make_records: Any) -> None:
    from vistext.store.sqlite.catalogue import Catalogue
    from vistext.store.sqlite.schema import SCHEMA_VERSION, TEXT_FROM

    db = tmp_path / "catalogue.sqlite"
    old = Catalogue(db, target_version=TEXT_FROM - 1)
    records, _ = make_records(3)
    old.upsert(records)
    old.close()
    with open_store(db, readonly=True) as store:  # read as it is: no text, no error
        assert store.photo_texts([1, 2]) == {} and store.text_matches(["open"]) == []
        assert store.ids_matching(ImageFilter(has_text=True)).size == 0
        assert store.ids_matching(ImageFilter(has_text=False)).size == 3
    with open_store(db) as store:
        assert store.catalogue.schema_version() == SCHEMA_VERSION  # type: ignore[attr-defined]
        assert len(store.photo_texts_to_read()) == 3
        first = store.get(records[0].path)
        assert first is not None
        version = store.version()
        store.set_photo_texts({first.sha: [("OPEN24", 0.97), ("HOURS", 0.99)]})
        assert store.version() > version  # search pages show the text: pages kept by version are made again
        store.set_photo_texts({first.sha: [("OPEN24", 0.97), ("EMERGENCYEXIT", 0.99)]})  # replaces, not adds
        version = store.version()
        store.set_photo_texts({})
        assert store.version() == version  # nothing written, nothing to make again
        # what is searched: the words, letters apart from digits, and words run together split as well
        stored = [(first.id, records[0].path, "open 24 emergencyexit emergency exit")]
        assert store.text_matches(["exit"]) == store.text_matches(["open", "hours"]) == stored
        assert store.photo_texts([first.id]) == {first.id: "OPEN24 / EMERGENCYEXIT"}  # what a hit shows
        store.remove([records[0].path])  # the text goes with the last photo holding it
        assert store.text_matches(["open"]) == [] and store.ids_matching(ImageFilter(has_text=True)).size == 0


def test_a_postgres_catalogue_from_before_the_text_table_upgrades(pg_url: str, make_records: Any) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    from vistext.store.postgres import schema

    with psycopg.connect(pg_url) as conn:  # a catalogue as the release before the text table made it
        for number in range(schema.TEXT_FROM - 1):
            schema.MIGRATIONS[number](conn)
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', %s)", (Jsonb(schema.TEXT_FROM - 1),))
    records, _ = make_records(2)
    with open_store(pg_url) as store:
        assert store.schema_version() == schema.SCHEMA_VERSION  # type: ignore[attr-defined]
        store.add(records)
        store.set_photo_texts({records[1].sha: [("Café Zürich", 0.95)]})
        found = store.text_matches(query_words("zürich"))  # accents aside, as the stored words are
        assert found == [(store.get(records[1].path).id, records[1].path, "cafe zurich")]  # type: ignore[union-attr]
        assert store.ids_matching(ImageFilter(has_text=True)).size == 1


def test_migrate_copies_the_text_found_in_photos(tmp_path: Path, pg_url: str, make_records: Any) -> None:
    from vistext.store.transfer import copy_store

    records, _ = make_records(3)
    with open_store(tmp_path / "catalogue.sqlite") as source, open_store(pg_url) as target:
        source.add(records)
        source.set_photo_texts({records[0].sha: [("NO PARKING", 0.98)], records[1].sha: []})
        report = copy_store(source, target)
        assert report.texts == 2  # the photo read with no text in it is copied too: it is not read again
        assert target.photo_texts_to_read() == {records[2].sha: records[2].path}
        assert target.photo_text_lines([records[0].sha]) == {records[0].sha: [("NO PARKING", 0.98)]}
        assert [path for _, path, _ in target.text_matches(["parking"])] == [records[0].path]


def test_what_a_query_looks_for_and_what_a_text_match_scores() -> None:
    from vistext.service.photo_text import TEXT_SCORE, merged, text_share
    from vistext.store.photo_text import searchable_words
    from vistext.store.records import VectorHit

    assert query_words("a sign that says OPEN 24 Hours") == ["open", "24", "hours"]
    assert query_words("the a of") == []
    assert searchable_words("OPEN24 / EMERGENCYEXIT / Zürich") == ["open", "24", "emergencyexit", "emergency", "exit",
                                                                  "zurich"]  # fmt: skip
    stored = " ".join(searchable_words("OPEN24 / HOURS"))
    assert text_share(["open", "24", "hours"], stored) == 1.0
    assert text_share(["open", "late", "today"], stored) == pytest.approx(1 / 3)
    assert text_share(["hour"], stored) == 1.0 and text_share(["ope"], stored) == 0.0  # prefixes from 4 letters
    hits = [VectorHit(1, "/a.jpg", 0.5), VectorHit(2, "/b.jpg", 0.2)]
    ranked = merged(hits, {2: ("/b.jpg", 1.0), 3: ("/c.jpg", 1 / 3)})
    assert [(h.id, round(h.score, 3)) for h in ranked] == [(2, TEXT_SCORE), (1, 0.5), (3, 0.3)]


def test_the_bot_says_which_words_found_a_photo() -> None:
    from vistext.bot import result_caption
    from vistext.service import Hit

    assert result_caption(1, Hit("/p/sign.jpg", 0.9, 7, None, [], "OPEN24 / HOURS", 1.0)) == (
        "1. 0.900  sign.jpg\ntext: OPEN24 / HOURS"
    )
    assert result_caption(2, Hit("/p/dog.jpg", 0.42, 8, None, [], "BLITZ", None)) == "2. 0.420  dog.jpg"
