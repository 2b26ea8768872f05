"""What an indexing run must do, whatever engine runs it: list the photos, compare them with the store, and
account for what changed (``IndexReport``); shared by the local engine and Ray.

A folder is listed by ``vistext.images.iter_image_files`` (any depth, links to folders not followed); a folder
that cannot be listed is a one-line failure and the photos the store knew under it are kept, not removed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from vistext.images import iter_image_files, not_regular_reason
from vistext.photo_meta import read_photo_meta
from vistext.store import FileState, Store

_MTIME_TOLERANCE = 1e-3  # stores may round float mtimes; a real edit moves it by far more


@dataclass
class IndexReport:
    """What one ``index_folder`` run did."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    reused: int = 0  # of the added and updated, how many took stored features by content hash (a move, a copy)
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (path, library warning) met while decoding
    seconds: float = 0.0
    meta_filled: int = 0  # unchanged files whose metadata was read now (indexed before metadata existed)
    attributes_filled: int = 0  # unchanged photos whose colour and light were measured now (indexed before them)
    tags: dict[str, Any] | None = None  # what a --tagger stored (vistext.service.collection_tags)
    default_tags: dict[str, Any] | None = None  # photos given tags with no training (vistext.service.default_tags)
    text: dict[str, Any] | None = None  # what the OCR step read (vistext.indexing.photo_text), when it ran
    model_space: dict[str, Any] | None = None  # a --model's space: its model, space and photos added to it
    unlisted: list[str] = field(default_factory=list)  # folders that could not be listed: their photos are kept

    def summary(self) -> str:
        """One line for the log: the counts and the time taken."""
        return (
            f"{self.added} added, {self.updated} updated, {self.removed} removed, {self.unchanged} unchanged, "
            f"{self.failed} failed in {self.seconds:.1f}s"
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failures"] = [{"path": path, "error": error} for path, error in self.failures]
        data["warnings"] = [{"path": path, "warning": warning} for path, warning in self.warnings]
        data["seconds"] = round(self.seconds, 3)
        return data


def _states_under(store: Store, root: str) -> dict[str, FileState]:
    prefix = root.rstrip(os.sep) + os.sep
    return store.file_states(prefix)


class Candidate(NamedTuple):
    """A new or changed file to decode and encode (``is_update``: the store has an older state of it)."""

    path: str
    size: int
    mtime: float
    is_update: bool


@dataclass
class Plan:
    """What a run must do: the candidates to encode, what the store knew under the root, and what is there now."""

    known: dict[str, FileState]
    seen: set[str]
    candidates: list[Candidate]


def list_folder(root_path: Path, report: IndexReport) -> Iterator[tuple[str, int, float]]:
    """``(path, size, mtime)`` of every image file under ``root_path``; a non-regular one is a failure, and so
    is a folder that cannot be listed (one line each; ``remove_gone`` keeps the photos indexed under it)."""

    def unreadable(folder: Path, reason: str) -> None:
        report.failed += 1
        report.failures.append((str(folder), reason))
        report.unlisted.append(str(folder))

    for file in iter_image_files(root_path, unreadable):
        entry = file_entry(str(file), report)
        if entry is not None:
            yield entry


def file_entry(path: str, report: IndexReport) -> tuple[str, int, float] | None:
    """``(path, size, mtime)`` of one image file, or None when it vanished (or is a dangling link); a
    non-regular file (a FIFO, a link to a device) is a one-line failure, since reading it could hang forever."""
    try:
        info = os.stat(path)  # follows symlinks: what matters is what the name leads to
    except OSError:
        return None  # vanished during the walk; the next run sees the truth
    if not stat.S_ISREG(info.st_mode):
        report.failed += 1
        report.failures.append((path, f"{not_regular_reason(info.st_mode)}, not an image file"))
        return None
    return path, info.st_size, info.st_mtime


def plan_changes(
    root: str,
    listing: Iterable[tuple[str, int, float]],
    store: Store,
    model: str,
    spaces: Iterable[str],
    report: IndexReport,
) -> Plan:
    """Compare a listing of the files under ``root`` with the store: unchanged files are counted and skipped.

    Shared by every engine (local threads, Ray), whatever lists the files (a folder walk, an object store).
    """
    known = _states_under(store, root)
    # an unchanged file still needs work when it lacks a requested space (indexed before that model existed)
    lacking: set[str] = set().union(*(store.paths_missing(space) for space in spaces))
    plan = Plan(known=known, seen=set(), candidates=[])
    for path, size, mtime in listing:
        plan.seen.add(path)
        state = known.get(path)
        if (
            state is not None
            and state.size == size
            and abs(float(state.mtime) - mtime) < _MTIME_TOLERANCE
            and state.model == model
            and path not in lacking
        ):
            report.unchanged += 1
            continue
        plan.candidates.append(Candidate(path, size, mtime, state is not None))
    return plan


def remove_gone(store: Store, plan: Plan, report: IndexReport) -> None:
    """Forget files the store knew under the root that are no longer there.

    Called last, so a file that was moved or renamed reuses its old features instead of being re-encoded.
    Files under a folder that could not be listed this time (``report.unlisted``) are not gone: they are kept.
    """
    hidden = tuple(folder.rstrip(os.sep) + os.sep for folder in report.unlisted)
    gone = sorted(path for path in set(plan.known) - plan.seen if not path.startswith(hidden))
    if gone:
        store.remove(gone)
        report.removed = len(gone)


def fill_meta(store: Store, unchanged: set[str], report: IndexReport, page: int = 256) -> None:
    """Read the metadata of unchanged files that have none stored (a catalogue from before metadata)."""
    lacking = sorted(store.paths_without_meta() & unchanged)
    for start in range(0, len(lacking), page):
        found = {path: meta for path in lacking[start : start + page] if (meta := read_photo_meta(path)) is not None}
        if found:
            store.set_photo_meta(found)
            report.meta_filled += len(found)
