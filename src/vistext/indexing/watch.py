"""Keeping a catalogue current with its folder (``vistext index DIR --watch``, ``vistext serve --watch DIR``).

After one ordinary pass over the folder, the operating system's file events (inotify, FSEvents, ... through
``watchfiles``) say which paths changed, and only those are looked at: no folder is walked again unless it is
itself new (a folder copied or moved in). Events are gathered in batches (``DEBOUNCE_MS``); each batch goes
through the same steps as a folder run (``plan.plan_changes``, ``local.index_candidates``), so a new or changed
photo is hashed and encoded, content the store has already (a moved or renamed photo, a renamed folder) is
reused by its hash without decoding, and photos that are gone are removed, after the batch's new files are
stored, so a move never drops the features its new name is about to reuse.

A file still being written is not read half-way: a file is read once its modification time is ``QUIET`` seconds
in the past, or once its size and time stood still between two looks ``QUIET`` apart (a clock ahead of ours);
until then it waits, and deletions wait with it (at most ``HOLD`` seconds) so that a file moved within the
folder is stored under its new name before its old one is forgotten. A writer that stalls longer than that
leaves a half file that is stored as failed or as what it showed, and read again on its next change event. A
bad file is its one-line failure in the batch's report, as in a folder run; it never stops the watcher.

The watcher holds the store's writer lock for as long as it runs, so a ``vistext index`` of the same catalogue
meanwhile fails at once with a message naming it.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from vistext.encoders import ImageEncoder
from vistext.errors import UsageError
from vistext.file_messages import file_messages
from vistext.images import IMAGE_SUFFIXES
from vistext.indexing.local import Derivation, Projector, index_candidates, index_folder
from vistext.indexing.plan import IndexReport, file_entry, list_folder, plan_changes
from vistext.store import Store

log = logging.getLogger(__name__)

QUIET = 0.5  # seconds a file must have stood still before it is read
HOLD = 10.0  # longest deletions wait for files still being written
DEBOUNCE_MS = 800  # longest a batch of events is gathered before it is handed over
STEP_MS = 100  # a batch is handed over once no event came for this long
TICK = 0.25  # seconds between looks at files still being written
START_TIMEOUT = 30.0  # seconds to wait for the operating system's watch to be set up


def _is_hidden(root: Path, path: str) -> bool:
    """Names starting with ``.`` are skipped, as a folder run skips them (the catalogue's ``.vistext/`` too)."""
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        return True
    return any(part.startswith(".") for part in parts)


class EventFeed:
    """``watchfiles`` in a thread of its own: the changed paths it reports are queued for the watcher, which can
    then take its time over a batch without the next events waiting on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.halt = threading.Event()
        self._paths: queue.SimpleQueue[set[str]] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vistext-watch-events", daemon=True)

    def _keep(self, change: object, path: str) -> bool:
        if _is_hidden(self.root, path):
            return False
        # a folder's own attributes changed (its time, its mode): its photos did not, and walking it again (the
        # whole library, for the watched folder itself) is the rescan a watcher is for avoiding
        return not (getattr(change, "name", "") == "modified" and os.path.isdir(path))

    def _run(self) -> None:
        from watchfiles import watch

        try:
            for changes in watch(
                self.root, watch_filter=self._keep, debounce=DEBOUNCE_MS, step=STEP_MS, stop_event=self.halt,
                rust_timeout=int(TICK * 1000), yield_on_timeout=True, raise_interrupt=False,
            ):  # fmt: skip
                self._ready.set()  # the first (empty) answer comes once the watch is set up
                if changes:
                    self._paths.put({path for _, path in changes})
        except Exception as error:  # noqa: BLE001 - handed to the watcher's thread, which raises it as a one-liner
            self._error = error
        finally:
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(START_TIMEOUT)
        self._check()

    def _check(self) -> None:
        if self._error is not None:
            reason = " ".join(str(self._error).split()) or type(self._error).__name__
            raise UsageError(f"{self.root}: cannot watch this folder for changes ({reason})")

    def take(self, timeout: float) -> set[str]:
        """The paths reported within ``timeout`` seconds (and all queued already); empty when none came."""
        try:
            paths = set(self._paths.get(timeout=timeout))
        except queue.Empty:
            self._check()
            return set()
        while True:
            try:
                paths |= self._paths.get_nowait()
            except queue.Empty:
                return paths

    def stop(self) -> None:
        self.halt.set()
        self._thread.join(timeout=5)


@dataclass
class _Heard:
    """A changed path not handled yet: when it was first heard of, and what its file looked like last time."""

    since: float
    looked: tuple[int, float] | None = None  # (size, mtime) at the last look
    looked_at: float = 0.0


@dataclass
class Batch:
    """What can be handled now: settled image files to index, and the paths (deleted ones, new folders) under
    which stored photos that no longer exist are to be removed."""

    files: list[tuple[str, int, float]] = field(default_factory=list)
    scopes: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.files or self.scopes)


class Backlog:
    """The changed paths heard of and not handled yet; ``take`` hands over what has settled."""

    def __init__(self, root: Path, quiet: float = QUIET, hold: float = HOLD) -> None:
        self.root = root
        self.quiet = quiet
        self.hold = hold
        self.heard: dict[str, _Heard] = {}

    def hear(self, paths: Iterable[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for path in paths:
            self.heard.setdefault(path, _Heard(now))

    def __len__(self) -> int:
        return len(self.heard)

    def take(self, report: IndexReport) -> Batch:
        """The settled part of the backlog; files still being written stay (and so do deletions, for a while)."""
        now = time.monotonic()
        batch, settled, waiting, deleted = Batch(), {}, {}, {}
        for path, heard in self.heard.items():
            try:
                info = os.stat(path)
            except OSError:
                deleted[path] = heard
                continue
            if stat.S_ISDIR(info.st_mode):  # a folder copied or moved in: its photos, and what it no longer holds
                batch.scopes.add(path)
                found = [(entry, _Heard(heard.since)) for entry in list_folder(Path(path), report)]
            elif os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES:
                entry = file_entry(path, report)
                found = [] if entry is None else [(entry, heard)]
            else:
                continue  # not a photo (a temporary name, a sidecar): never indexed, nothing to do
            for entry, look in found:  # a file may be heard of itself and in its new folder's walk: once
                if self._settled(entry, look, now):
                    settled[entry[0]] = entry
                else:
                    waiting[entry[0]] = look
        batch.files = [entry for path, entry in settled.items() if path not in waiting]
        # a deletion waits QUIET (the other half of a move comes in the same batch, or the next), and while
        # files are still being written (one of them may be its new name), at most HOLD
        held = bool(waiting) and now - min((h.since for h in deleted.values()), default=now) < self.hold
        for path, heard in deleted.items():
            if held or now - heard.since < self.quiet:
                waiting[path] = heard
            else:
                batch.scopes.add(path)
        self.heard = waiting
        return batch

    def _settled(self, entry: tuple[str, int, float], heard: _Heard, now: float) -> bool:
        _, size, mtime = entry
        if time.time() - mtime >= self.quiet:
            return True
        if heard.looked == (size, mtime) and now - heard.looked_at >= self.quiet:
            return True  # unchanged between two looks: a file whose time is ahead of this machine's clock
        if heard.looked != (size, mtime):
            heard.looked, heard.looked_at = (size, mtime), now
        return False


def _gone(known: Iterable[str], scopes: set[str], root: Path, seen: set[str]) -> list[str]:
    """Stored paths at or under a scope that no longer exist (a deleted photo, the old name of a moved folder)."""
    top = str(root)
    gone = []
    for path in known:
        if path in seen:
            continue
        parent = path
        while parent and parent != top:
            if parent in scopes:
                if not os.path.lexists(path):
                    gone.append(path)
                break
            parent = os.path.dirname(parent)
            if parent == os.path.dirname(parent):
                break
    return sorted(gone)


class FolderWatcher:
    """Keeps ``store`` current with ``folder``: ``index_all()`` once, then ``changes()`` until ``stop`` is set.

    Use as a context manager: entering takes the store's writer lock and starts listening to file events (before
    the first pass, so nothing that changes during it is missed); leaving stops both within a second."""

    def __init__(
        self,
        folder: str | Path,
        store: Store,
        encoder: ImageEncoder,
        *,
        projectors: Mapping[str, Projector] | None = None,
        stop: threading.Event | None = None,
        batch_size: int = 16,
        workers: int = 2,
    ) -> None:
        self.root = Path(folder).resolve()
        if not self.root.is_dir():
            raise UsageError(f"{folder}: not a folder")
        self.store = store
        self.encoder = encoder
        self.projectors = dict(projectors or {})
        self.stop = stop or threading.Event()
        self.batch_size = batch_size
        self.workers = workers
        self.backlog = Backlog(self.root)
        self._feed = EventFeed(self.root)
        self._exit = ExitStack()

    def __enter__(self) -> FolderWatcher:
        with ExitStack() as entering:
            entering.enter_context(self.store.writer_lock())
            entering.callback(self._feed.stop)
            self._feed.start()
            self._exit = entering.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    def index_all(self, derived: Mapping[str, Derivation] | None = None, progress: bool = False) -> IndexReport:
        """The ordinary pass over the whole folder (``index_folder``), under the lock this watcher holds."""
        return index_folder(
            self.root, self.store, self.encoder, projectors=self.projectors, derived=derived,
            batch_size=self.batch_size, workers=self.workers, progress=progress, stop=self.stop, locked=True,
        )  # fmt: skip

    def changes(self) -> Iterator[IndexReport]:
        """One report per batch of changes that did something, until ``stop`` is set."""
        while not self.stop.is_set():
            self.backlog.hear(self._feed.take(TICK if len(self.backlog) else 2 * TICK))
            if not len(self.backlog):
                continue
            report = self.apply_settled()
            if report is not None and (report.added or report.updated or report.removed or report.failed):
                yield report

    def apply_settled(self) -> IndexReport | None:
        """Index what has settled in the backlog and remove what is gone; None when nothing had settled."""
        started = time.perf_counter()
        report = IndexReport()

        def warned(path: str, message: str) -> None:
            report.warnings.append((path, message))
            log.info("%s: %s", path, message)

        batch = self.backlog.take(report)
        if not batch and not report.failed:
            return None
        with file_messages(warned):
            plan = plan_changes(str(self.root), batch.files, self.store, self.encoder.name, self.projectors, report)
            done = index_candidates(
                plan.candidates, self.store, self.encoder, self.projectors, report, batch_size=self.batch_size,
                workers=self.workers, stop=self.stop,
            )  # fmt: skip
        gone = _gone(plan.known, batch.scopes, self.root, plan.seen) if done and batch.scopes else []
        if gone:
            self.store.remove(gone)
            report.removed = len(gone)
        report.seconds = time.perf_counter() - started
        log.info("%s changed: %s", self.root, report.summary())
        return report
