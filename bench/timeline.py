"""The web page's timeline: what one page of ``/api/list`` (newest first, cursor paging, copies marked) and the
copies check of a search page cost as the collection grows.

A SQLite catalogue of synthetic photos (random 1,280-d features, a date taken on nine in ten of them, every
perceptual hash already cached as after one ``vistext duplicates`` run) is listed page by page through the
service, as the page scrolls: the first page, then pages deep into the collection by cursor and by offset. The
copies check of one page (``service.copies.copies_among``) is timed on its own too.

    .venv/bin/python bench/timeline.py               # 10,000 photos, pages of 48
    .venv/bin/python bench/timeline.py --size 50000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vistext.photo_meta import PhotoMeta
from vistext.service import Service
from vistext.service.copies import copies_among
from vistext.store import ImageRecord, open_store
from vistext.store.records import ImageFilter

JAN_2015 = 1_420_070_400.0


def build(db: Path, size: int, dim: int) -> None:
    """``size`` synthetic photos in a new catalogue at ``db``, their perceptual hashes cached."""
    rng = np.random.default_rng(0)
    with open_store(db) as store:
        for start in range(0, size, 1000):
            count = min(1000, size - start)
            pooled = rng.random((count, dim), dtype=np.float32)
            taken = JAN_2015 + rng.random(count) * 10 * 365 * 86_400
            records = [
                ImageRecord(
                    path=f"/photos/{(start + i) // 500:04d}/{start + i:07d}.jpg",
                    size=1000,
                    mtime=float(JAN_2015 + rng.random() * 3e8),
                    sha=f"sha-{start + i}",
                    model="enc",
                    status="ok",
                    error=None,
                    pooled=pooled[i],
                    logits=None,
                    meta=PhotoMeta(taken_at=None if i % 10 == 0 else float(taken[i]), width=4000, height=3000),
                )
                for i in range(count)
            ]
            store.add(records)
            codes = rng.integers(-(2**62), 2**62, size=(count, 2))
            store.set_picture_hashes({r.sha: (int(a), int(b)) for r, (a, b) in zip(records, codes, strict=True)})


def timed(run, repeat: int) -> float:
    """Median milliseconds of ``run()``."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("-k", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "catalogue.sqlite"
        started = time.perf_counter()
        build(db, args.size, args.dim)
        print(f"{args.size} photos x {args.dim}-d built in {time.perf_counter() - started:.1f} s; pages of {args.k}")
        with Service(db=db, progress=False) as service:
            store = service.store()
            first = service.list_images(k=args.k)
            deep = store.newest_first(ImageFilter(), 1, offset=args.size // 2)[0]
            cursor = f"{deep[1]!r}:{deep[0]}"
            ids = [item.id for item in first.results]
            rows = [
                ("store.newest_first, first page", lambda: store.newest_first(ImageFilter(), args.k)),
                (
                    "store.newest_first, by cursor, halfway",
                    lambda: store.newest_first(ImageFilter(), args.k, after=deep[::-1]),
                ),
                ("copies_among, one page (hashes cached)", lambda: copies_among(store, ids)),
                ("service.list_images, first page", lambda: service.list_images(k=args.k)),
                ("service.list_images, by cursor, halfway", lambda: service.list_images(k=args.k, cursor=cursor)),
                (
                    "service.list_images, by offset, halfway",
                    lambda: service.list_images(k=args.k, offset=args.size // 2),
                ),
                (
                    "service.list_images, one folder of 500",
                    lambda: service.list_images(ImageFilter(folder="/photos/0001"), k=args.k),
                ),
            ]
            for label, run in rows:
                print(f"{label:45} {timed(run, args.repeat):8.1f} ms")


if __name__ == "__main__":
    main()
