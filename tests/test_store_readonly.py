"""Reading commands open catalogues read-only; a file that is not a vistext catalogue is never changed; a
damaged catalogue is a one-line error naming the file and the reason."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import vistext
from vistext.cli import main
from vistext.errors import StoreError
from vistext.store import open_store


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def foreign_file(tmp_path: Path, *, images_table: bool) -> Path:
    """Another program's SQLite file (rollback journal, its own tables), as a user might pass to --db."""
    path = tmp_path / "notes.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note {i}",) for i in range(50)])
        if images_table:
            conn.execute("CREATE TABLE images (id INTEGER PRIMARY KEY, path TEXT, size INTEGER)")
            conn.execute("INSERT INTO images (path, size) VALUES ('/a.jpg', 3)")
    conn.close()
    return path


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code != 0, captured.out
    doc = json.loads(captured.out)
    assert "\n" not in doc["error"] and "Traceback" not in captured.err, captured.err
    return str(doc["error"])


READING_COMMANDS = [
    ["info"],
    ["search", "dog"],
    ["similar", "1"],
    ["list"],
    ["export"],
    ["duplicates"],
]


@pytest.mark.parametrize("images_table", [False, True], ids=["own-tables", "with-images-table"])
def test_reading_commands_leave_another_programs_sqlite_file_untouched(
    images_table: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = foreign_file(tmp_path, images_table=images_table)
    before = digest(path)
    for argv in READING_COMMANDS:
        error = one_line_error(capsys, [*argv, "--db", str(path)])
        assert f"{path}: is not a vistext catalogue" in error, (argv, error)
        assert digest(path) == before, f"{argv} changed the file"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite"], f"{argv} left files beside it"


def test_writing_to_another_programs_file_is_refused_before_any_byte_changes(tmp_path: Path) -> None:
    path = foreign_file(tmp_path, images_table=True)
    before = digest(path)
    for readonly in (False, None):
        with pytest.raises(StoreError, match=r"is not a vistext catalogue \(it holds another program's tables"):
            open_store(path, readonly=readonly)
    assert digest(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_file_that_is_not_sqlite_or_is_empty_sqlite(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 200)
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()  # a 0-byte file: what a new catalogue starts as
    for readonly in (True, False):
        with pytest.raises(StoreError, match=rf"{text}: is not a vistext catalogue \(file is not a database\)"):
            open_store(text, readonly=readonly)
    with pytest.raises(StoreError, match="no catalogue here|is not a vistext catalogue"):
        open_store(empty, readonly=True)
    assert text.read_text() == "hello\n" * 200 and empty.stat().st_size == 0


def test_a_read_only_open_of_an_old_catalogue_names_the_command_that_upgrades_it(
    tmp_path: Path, make_records: Callable[..., Any]
) -> None:
    db = tmp_path / "photos" / ".vistext" / "catalogue.sqlite"
    with open_store(db, target_version=1) as store:
        assert store.catalogue.schema_version() == 1
    before = digest(db)
    with pytest.raises(StoreError, match=rf"schema version 1 must be upgraded .*`vistext index {tmp_path / 'photos'}"):
        open_store(db, readonly=True)
    assert digest(db) == before


def test_a_reading_service_opens_its_catalogue_read_only(
    tmp_path: Path, make_records: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from vistext.service import Service

    db = tmp_path / "cat" / "catalogue.sqlite"
    with open_store(db) as store:
        store.add(make_records(5)[0])
    with Service(db, progress=False, read_only=True) as service:
        assert service.store().readonly
    with Service(db, progress=False) as service:
        assert not service.store().readonly


@pytest.mark.parametrize(
    ("value", "shown"), [("'five'", "five"), ("'5.5'", "5.5"), ("x'00ff'", ""), ("'-1'", "-1"), ("'true'", "true")]
)
def test_a_non_integer_schema_version_is_one_line(value: str, shown: str, tmp_path: Path) -> None:
    db = tmp_path / "catalogue.sqlite"
    open_store(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE meta SET value = {value} WHERE key = 'schema_version'")
    conn.close()
    for readonly in (True, False, None):
        with pytest.raises(StoreError, match=rf"{db}: damaged catalogue: its schema_version is .*not a whole number"):
            open_store(db, readonly=readonly)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("features SET pooled", "'not a vector'"),  # a blob whose type bit flipped: now text
        ("features SET pooled", "CAST(pooled AS TEXT)"),  # the same bytes as text (invalid UTF-8)
        ("embeddings SET vector", "CAST(vector AS TEXT)"),
        ("features SET logits", "12345"),
        ("images SET size", "'big'"),
        ("images SET mtime", "x'0102'"),
    ],
)
def test_a_column_whose_type_flipped_is_one_line(
    column: str, value: str, tmp_path: Path, make_records: Callable[..., Any]
) -> None:
    db = tmp_path / "catalogue.sqlite"
    records, pooled = make_records(5)
    with open_store(db) as store:
        store.add(records)
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE {column} = {value}")
    conn.close()
    with open_store(db, readonly=True) as store, pytest.raises(StoreError) as caught:
        store.get(records[0].path)
        list(store.records())
        store.search("image", pooled[:1], 3)
        store.search("joint:t", pooled[:1, :8], 3)
        store.file_states()
    message = str(caught.value)
    assert message.startswith(f"{db}: damaged catalogue") and "\n" not in message and len(message) < 300, message


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_readonly_open_never_writes(tmp_path: Path, make_records: Callable) -> None:
    db = tmp_path / "cat" / "catalogue.sqlite"
    records, pooled = make_records(20)
    with open_store(db) as store:
        store.add(records)
        store.search("image", pooled[0], 3)
    before = _snapshot(db.parent)
    with open_store(db, readonly=True) as store:
        assert store.readonly and store.count() == 20 and store.info()["count"] == 20
        assert store.search("image", pooled[4], 1)[0][0].path == records[4].path
        assert store.get(records[2].path).size == records[2].size  # type: ignore[union-attr]
        with pytest.raises(StoreError, match=r"read-only.*--db"):
            store.add(make_records(1, seed=9)[0])
    after = _snapshot(db.parent)
    # the catalogue and its index files are untouched (no migration, no stamp, no index saved); in a writable
    # folder SQLite may add its empty shared-memory files for a WAL reader; a read-only mount gets none (below)
    assert {path: after[path] for path in before} == before
    assert {Path(path).name for path in set(after) - set(before)} <= {"catalogue.sqlite-wal", "catalogue.sqlite-shm"}


_READ_ONLY_SCRIPT = """
import sys
from pathlib import Path
from vistext.errors import StoreError
from vistext.service import Service
from vistext.store import open_store
db = Path(sys.argv[1])
with open_store(db) as store:
    assert store.readonly, "a catalogue on a read-only mount must open read-only"
    print("count", store.count(), "hit", store.search("image", store.vectors("image")[1][0], 1)[0][0].id)
service = Service(db, progress=False)
print("info", service.info().to_dict()["count"], service.status().to_dict()["images"])
try:
    Service(progress=False).index(db.parent.parent, text_search=False)
except StoreError as error:
    print("index:", error)
"""


def test_read_only_mount(tmp_path: Path, make_records: Callable) -> None:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare to mount a folder read-only")
    photos = tmp_path / "photos"
    db = photos / ".vistext" / "catalogue.sqlite"
    with open_store(db) as store:
        store.add(make_records(5)[0])
    before = _snapshot(photos)
    src = str(Path(vistext.__file__).resolve().parents[1])  # the vistext under test
    command = (
        f"mount --bind {photos} {photos} && mount -o remount,bind,ro {photos} {photos} && "
        f"PYTHONPATH={src} {sys.executable} -c '{_READ_ONLY_SCRIPT}' {db}"
    )
    done = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=120)
    if "mount:" in done.stderr and done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("count 5 hit ") and lines[1] == "info 5 5", done.stdout
    assert lines[2].startswith(f"index: {db}: cannot write the catalogue here") and "--db" in lines[2]
    assert _snapshot(photos) == before
