"""``index --watch`` and ``serve --watch``: a real watcher (watchfiles in its thread), real files, real SQLite, the
bundled image encoder. Nothing here times the watcher: each test waits, with a generous deadline, for the state
it expects (speed is bench/watch.py's business)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest

from vistext.errors import StoreError
from vistext.indexing.plan import IndexReport
from vistext.indexing.watch import Backlog, EventFeed
from vistext.server import ServerSettings
from vistext.service import Service

DEADLINE = 90.0  # seconds to wait for an expected state; a busy 2-core machine may need many of them
ROOT = Path(__file__).resolve().parents[1]


def wait_for(condition: Callable[[], object], what: str, deadline: float = DEADLINE) -> object:
    """Poll ``condition`` until it is truthy (returned) or the deadline passes (the test fails naming ``what``)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}")


class Watching:
    """``Service.watch`` in a thread, its reports collected; ``stop()`` ends it as the server does."""

    def __init__(self, service: Service, folder: Path) -> None:
        self.service = service
        self.reports: list[IndexReport] = []
        self.error: BaseException | None = None
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(folder,), daemon=True)
        self.thread.start()
        wait_for(lambda: self.reports or self.error, "the first pass")
        assert self.error is None, self.error

    def _run(self, folder: Path) -> None:
        try:
            for report in self.service.watch(folder, text_search=False, stop=self.halt):
                self.reports.append(report)
        except BaseException as error:  # noqa: BLE001 - shown by the test that waits
            self.error = error

    def states(self) -> dict[str, tuple[str, str | None]]:
        """Path -> (status, sha) of every stored file."""
        return {path: (state.status, state.sha) for path, state in self.service.store().file_states().items()}

    def total(self, key: str) -> int:
        return sum(getattr(report, key) for report in self.reports[1:])

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the watcher did not stop"
        assert self.error is None, self.error


@pytest.fixture
def watching(tmp_path: Path) -> Iterator[Callable[[Path], Watching]]:
    started: list[tuple[Service, Watching]] = []

    def start(folder: Path) -> Watching:
        service = Service(db=tmp_path / "catalogue.sqlite", progress=False)
        watcher = Watching(service, folder)
        started.append((service, watcher))
        return watcher

    yield start
    for service, watcher in started:
        watcher.halt.set()
        watcher.thread.join(timeout=30)
        service.close()


def write(source: Path, target: Path) -> Path:
    """Write ``source``'s bytes to ``target`` as a copy would (a new file, then its data)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    return target


def test_added_changed_and_deleted_photos_are_followed(
    tmp_path: Path, real_jpegs: list[Path], watching: Callable[[Path], Watching]
) -> None:
    folder = tmp_path / "photos"
    first = write(real_jpegs[0], folder / "first.jpg")
    watcher = watching(folder)
    assert watcher.reports[0].added == 1

    new = [write(real_jpegs[1], folder / "new.jpg"), write(real_jpegs[2], folder / "deeper" / "new2.jpg")]
    wait_for(lambda: all(watcher.states().get(str(p), ("", ""))[0] == "ok" for p in new), "the added photos")

    before = watcher.states()[str(first)][1]
    first.write_bytes(real_jpegs[3].read_bytes())  # changed in place
    wait_for(lambda: watcher.states()[str(first)][1] != before, "the changed photo's new hash")
    assert watcher.states()[str(first)][0] == "ok"

    new[0].unlink()
    wait_for(lambda: str(new[0]) not in watcher.states(), "the deleted photo's removal")
    assert set(watcher.states()) == {str(first), str(new[1])}
    # a batch's report comes after its rows are stored and its photos tagged: the catalogue shows it first
    wait_for(lambda: watcher.total("removed"), "the report of the batch that removed it")
    assert watcher.total("added") == 2 and watcher.total("updated") == 1 and watcher.total("removed") == 1

    with Service(db=tmp_path / "catalogue.sqlite", progress=False) as other:  # the watcher holds the writer lock
        with pytest.raises(StoreError, match="another `vistext index`"):
            other.index(folder, text_search=False)
    watcher.stop()


def test_a_renamed_folder_reuses_its_stored_features(
    tmp_path: Path, real_jpegs: list[Path], watching: Callable[[Path], Watching]
) -> None:
    folder = tmp_path / "photos"
    for i, photo in enumerate(real_jpegs[:4]):
        write(photo, folder / "trip" / f"{i}.jpg")
    watcher = watching(folder)
    old = watcher.states()
    assert len(old) == 4

    (folder / "trip").rename(folder / "trip 2019")
    renamed = {str(folder / "trip 2019" / Path(path).name): sha for path, (_, sha) in old.items()}
    wait_for(lambda: {p: sha for p, (_, sha) in watcher.states().items()} == renamed, "the folder under its new name")
    wait_for(lambda: watcher.total("removed") >= 4, "the report of the batch that moved it")
    assert watcher.total("reused") == 4 and watcher.total("added") == 4, "a move must not re-encode a photo"
    assert watcher.total("removed") == 4
    watcher.stop()


def test_empty_and_truncated_files_fail_alone_and_are_read_again_when_complete(
    tmp_path: Path, real_jpegs: list[Path], watching: Callable[[Path], Watching]
) -> None:
    folder = tmp_path / "photos"
    write(real_jpegs[0], folder / "kept.jpg")
    watcher = watching(folder)

    (folder / "empty.jpg").write_bytes(b"")
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(real_jpegs[1].read_bytes()[:2000])
    wait_for(lambda: len(watcher.states()) == 3, "both bad files stored as failed")
    states = watcher.states()
    assert states[str(folder / "empty.jpg")][0] == "failed" and states[str(truncated)][0] == "failed"
    failures = dict(failure for report in watcher.reports[1:] for failure in report.failures)
    assert failures[str(folder / "empty.jpg")] == "empty file (0 bytes)"
    assert "\n" not in failures[str(truncated)] and failures[str(truncated)]
    assert states[str(folder / "kept.jpg")][0] == "ok"  # nothing stored before was lost

    truncated.write_bytes(real_jpegs[1].read_bytes())  # the copy completes: its next event reads it again
    wait_for(lambda: watcher.states()[str(truncated)][0] == "ok", "the completed file indexed")
    assert watcher.thread.is_alive()
    watcher.stop()


def test_a_file_still_being_written_waits_and_so_do_deletions(tmp_path: Path, real_jpegs: list[Path]) -> None:
    folder = tmp_path / "photos"
    writing = write(real_jpegs[0], folder / "writing.jpg")  # modified just now, as a copy in progress is
    backlog = Backlog(folder, quiet=30.0, hold=600.0)
    backlog.hear([str(writing)])
    backlog.hear([str(folder / "old name.jpg")], now=time.monotonic() - 60)  # a deletion heard a minute ago
    report = IndexReport()
    assert not backlog.take(report) and len(backlog) == 2  # neither the new file nor the deletion is handed over

    past = time.time() - 3600
    os.utime(writing, (past, past))  # the writer is done (as `cp -p` leaves it)
    batch = backlog.take(report)
    assert [entry[0] for entry in batch.files] == [str(writing)]
    assert batch.scopes == {str(folder / "old name.jpg")} and not len(backlog) and not report.failed


def test_a_new_folder_is_walked_and_non_photos_are_ignored(tmp_path: Path, real_jpegs: list[Path]) -> None:
    folder = tmp_path / "photos"
    moved_in = folder / "album"
    for i, photo in enumerate(real_jpegs[:2]):
        write(photo, moved_in / "inner" / f"{i}.jpg")
    (moved_in / "notes.txt").write_text("not a photo")
    (moved_in / ".hidden.jpg").write_bytes(real_jpegs[0].read_bytes())
    past = time.time() - 3600
    for file in moved_in.rglob("*"):
        os.utime(file, (past, past))
    backlog = Backlog(folder)
    # a file of the new folder is heard of by itself too (created before its folder was watched): read once
    backlog.hear([str(moved_in), str(folder / "notes.txt"), str(moved_in / "inner" / "0.jpg")])
    batch = backlog.take(IndexReport())
    assert sorted(Path(entry[0]).name for entry in batch.files) == ["0.jpg", "1.jpg"]
    assert batch.scopes == {str(moved_in)}


def test_a_folder_whose_attributes_change_is_not_walked_again(tmp_path: Path, real_jpegs: list[Path]) -> None:
    folder = tmp_path / "photos"
    (folder / "album").mkdir(parents=True)
    feed = EventFeed(folder.resolve())
    feed.start()
    try:
        os.utime(folder)  # the watched folder itself: walking it would be the full rescan --watch avoids
        os.chmod(folder / "album", 0o700)
        photo = write(real_jpegs[0], folder / "album" / "new.jpg")
        heard: set[str] = set()
        wait_for(lambda: heard.update(feed.take(0.2)) or str(photo.resolve()) in heard, "the new photo's event")
    finally:
        feed.stop()
    assert heard == {str(photo.resolve())}


def test_serve_watch_finds_a_new_photo_over_http(
    tmp_path: Path,
    real_jpegs: list[Path],
    running_server: Callable[..., AbstractContextManager[str]],
    text_search_available: Callable[[], bool],
    require: Callable[[bool, str], None],
) -> None:
    require(text_search_available(), "no joint image-text model in this checkout: text search is unavailable")
    folder = tmp_path / "photos"
    write(real_jpegs[0], folder / "first.jpg")
    with running_server(ServerSettings(watch=folder)) as url, httpx.Client(base_url=url, timeout=60) as http:

        def found(name: str) -> bool:
            answer = http.get("/api/search", params={"q": "a photo", "k": 10})
            return answer.status_code == 200 and any(Path(hit["path"]).name == name for hit in answer.json()["results"])

        wait_for(lambda: found("first.jpg"), "the first pass searchable")
        write(real_jpegs[1], folder / "arrived later.jpg")
        wait_for(lambda: found("arrived later.jpg"), "the new photo in the server's search results")
        assert http.get("/api/info").json()["ok"] == 2
    assert (folder / ".vistext" / "catalogue.sqlite").is_file()  # the watched folder's own catalogue


@contextmanager
def _cli(*argv: str) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    # Ctrl-C as a terminal sends it, even when the suite runs in the background (which ignores SIGINT for
    # everything it starts)
    command = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from vistext.cli import main; sys.exit(main())"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", command, *argv],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_index_watch_prints_each_batch_and_stops_cleanly_on_ctrl_c(tmp_path: Path, real_jpegs: list[Path]) -> None:
    folder = tmp_path / "photos"
    write(real_jpegs[0], folder / "first.jpg")
    with _cli("index", str(folder), "--watch", "--no-text") as process:
        assert process.stdout is not None
        lines: list[str] = []

        def read_until(text: str) -> None:
            for line in process.stdout:  # type: ignore[union-attr]
                lines.append(line)
                if text in line:
                    return
            pytest.fail(f"the command ended before printing {text!r}: {''.join(lines)}")

        read_until("for changes (Ctrl-C to stop)")
        shutil.copy(real_jpegs[1], folder / "second.jpg")
        read_until("1 added, 0 updated, 0 removed, 0 failed")
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, "".join(lines) + out
    assert "stopped watching" in out and "1 added" in out
