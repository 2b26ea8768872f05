"""``--watch``: how soon a new photo is searchable, a burst of photos against ``vistext index``, a renamed folder.

    .venv/bin/python bench/watch.py            # 1,000 Flickr8k originals (500 px)
    .venv/bin/python bench/watch.py --quick    # 200

Side by side on the same photos, both with text search (as ``vistext index`` runs) and models loaded first:
``Service.index`` over a folder holding the photos, and ``Service.watch`` over an empty folder into which the
photos are then written as fast as Python can. Then: single photos written one at a time (seconds from the
write until ``Service.search`` returns it), and the burst's folder renamed (seconds until the catalogue holds
every photo under its new name, and how many were re-encoded). Figures only; nothing passes or fails here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from vistext.errors import StoreError
from vistext.indexing.plan import IndexReport
from vistext.service import Service

FLICKR8K = Path(os.environ.get("VISTEXT_FLICKR8K", Path(__file__).resolve().parents[2] / "shared/datasets/flickr8k"))
LATENCY_PHOTOS = 5
WAIT = 600.0  # seconds before a wait gives up


def until(condition: Callable[[], bool], step: float = 0.02, alive: threading.Thread | None = None) -> float:
    """Seconds until ``condition`` holds (polled every ``step``), while the ``alive`` thread runs."""
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > WAIT or (alive is not None and not alive.is_alive()):
            raise SystemExit("gave up waiting: the watcher stopped or did not catch up")
        time.sleep(step)
    return time.perf_counter() - started


def with_index(photos: list[bytes], root: Path) -> float:
    """``vistext index`` on a folder already holding the photos: seconds of its pass (models loaded first)."""
    folder = root / "indexed"
    folder.mkdir()
    for i, data in enumerate(photos):
        (folder / f"{i:05d}.jpg").write_bytes(data)
    with Service(db=root / "indexed.sqlite", progress=False) as service:
        service.load_models()
        report = service.index(folder)
    assert report.added == len(photos), report.summary()
    return report.seconds


class Watcher:
    def __init__(self, service: Service, folder: Path) -> None:
        self.reports: list[IndexReport] = []
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(service, folder), daemon=True)

    def _run(self, service: Service, folder: Path) -> None:
        for report in service.watch(folder, stop=self.halt):
            self.reports.append(report)


def with_watch(photos: list[bytes], singles: list[bytes], root: Path) -> dict[str, float]:
    folder = root / "watched"
    folder.mkdir()
    service = Service(db=root / "watched.sqlite", progress=False)
    service.load_models()
    store = service.store
    watcher = Watcher(service, folder)
    watcher.thread.start()
    until(lambda: bool(watcher.reports), alive=watcher.thread)
    figures: dict[str, float] = {}

    def searchable(path: Path) -> bool:
        try:
            hits = service.search("a photo", k=LATENCY_PHOTOS + 1).results
        except StoreError:  # no photo has a text-search vector yet
            return False
        return any(hit.path == str(path) for hit in hits)

    latencies = []
    for i, data in enumerate(singles):
        path = folder / f"single-{i}.jpg"
        started = time.perf_counter()
        path.write_bytes(data)
        until(lambda path=path: searchable(path), alive=watcher.thread)
        latencies.append(time.perf_counter() - started)
    figures["latency_median_s"] = statistics.median(latencies)
    figures["latency_max_s"] = max(latencies)

    burst = folder / "burst"
    burst.mkdir()
    expected = LATENCY_PHOTOS + len(photos)
    started = time.perf_counter()
    for i, data in enumerate(photos):
        (burst / f"{i:05d}.jpg").write_bytes(data)
    figures["burst_write_s"] = time.perf_counter() - started
    until(lambda: store().count("ok") == expected, step=0.1, alive=watcher.thread)
    figures["burst_s"] = time.perf_counter() - started
    # the batch that stored the last photos reports once it returns: wait for it, or the rename would count it
    until(lambda: sum(r.added for r in watcher.reports[1:]) == expected, alive=watcher.thread)

    before = len(watcher.reports)
    started = time.perf_counter()
    burst.rename(folder / "burst renamed")
    prefix = str(folder / "burst renamed") + os.sep

    def moved() -> bool:
        states = store().file_states(str(folder) + os.sep)
        return len(states) == expected and sum(path.startswith(prefix) for path in states) == len(photos)

    figures["rename_s"] = until(moved, step=0.1, alive=watcher.thread)
    time.sleep(1.0)  # let the batch that removed the old names report
    later = watcher.reports[before:]
    figures["rename_reused"] = sum(r.reused for r in later)
    figures["rename_encoded"] = sum(r.added + r.updated - r.reused for r in later)
    watcher.halt.set()
    watcher.thread.join()
    service.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 photos instead of 1,000")
    parser.add_argument("-n", type=int, help="how many photos (default 1,000; 200 with --quick)")
    args = parser.parse_args(argv)
    n = args.n or (200 if args.quick else 1000)
    sources = sorted((FLICKR8K / "originals").glob("*.jpg"))[:n]
    if len(sources) < n:
        print(f"need {n} Flickr8k originals in {FLICKR8K / 'originals'}", file=sys.stderr)
        return 2
    photos = [path.read_bytes() for path in sources]
    # the single photos are others (Flickr8k's 224-px copies of later photos), so none is reused by its hash
    singles = [path.read_bytes() for path in sorted((FLICKR8K / "images").glob("*.jpg"))[-LATENCY_PHOTOS:]]
    with tempfile.TemporaryDirectory(prefix="vistext-bench-watch-") as tmp:
        index_s = with_index(photos, Path(tmp))
        figures = with_watch(photos, singles, Path(tmp))
    print(f"photos: {n} Flickr8k originals (500 px), text search on; cpu count {os.cpu_count()}")
    print(f"vistext index:     {index_s:7.1f} s  ({n / index_s:5.1f} photos/s)")
    burst = figures["burst_s"]
    print(
        f"--watch burst:     {burst:7.1f} s  ({n / burst:5.1f} photos/s) from the first write to the last photo "
        f"stored (writing took {figures['burst_write_s']:.1f} s); watch/index time {burst / index_s:.2f}"
    )
    print(
        f"new photo searchable: median {figures['latency_median_s']:.2f} s, max {figures['latency_max_s']:.2f} s "
        f"after its write ({LATENCY_PHOTOS} photos, one at a time)"
    )
    print(
        f"folder of {n} renamed: {figures['rename_s']:.1f} s until stored under the new name; "
        f"{int(figures['rename_reused'])} reused by content hash, {int(figures['rename_encoded'])} re-encoded"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
