"""Ray indexing vs the embedded local engine on real photos (Flickr8k), into fresh SQLite catalogues.

    .venv/bin/python bench/ray_index.py            # 2,000 photos (1,000 500-px originals + 1,000 of images/)
    .venv/bin/python bench/ray_index.py --quick    # 200 photos

Prints: the local cluster's start-up (``ray.init``, reported apart), the fixed cost of one Ray job (a 32-photo
run: actor start, model loads), img/s of the Ray path and of the local path over the same photos with the
same models (text-search embeddings included, as ``vistext index`` does by default), their ratio (target
>= 0.8 once the cluster is up), and the driver's resident memory before and at its peak during Ray runs of a
quarter and of all the photos (flat: the driver holds only the plan and each file's outcome). Figures only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only; read when ray is imported
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import psutil  # noqa: E402
import ray  # noqa: E402

from vistext.indexing.local import IndexReport  # noqa: E402
from vistext.service import Service  # noqa: E402

FLICKR8K = Path(os.environ.get("VISTEXT_FLICKR8K", Path(__file__).resolve().parents[2] / "shared/datasets/flickr8k"))


def pick_photos(count: int) -> list[Path]:
    half = count // 2
    originals = sorted((FLICKR8K / "originals").glob("*.jpg"))[:half]
    return originals + sorted((FLICKR8K / "images").glob("*.jpg"))[: count - len(originals)]


@contextmanager
def peak_rss() -> Iterator[Callable[[], tuple[float, float]]]:
    """Samples this process's RSS every 50 ms; yields a function giving (MB before, peak MB so far)."""
    process = psutil.Process()
    before = process.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], process.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield lambda: (before / 2**20, peak[0] / 2**20)
    finally:
        done.set()
        thread.join()


def cpu_seconds() -> float:
    """CPU time of this process and every process below it (the Ray cluster's), reaped children included."""
    total = 0.0
    process = psutil.Process()
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def run(folder: Path, db: Path, engine: str, text: bool) -> IndexReport:
    """One indexing run; ``report.cpu`` (added here) is the CPU-seconds it took across every process."""
    with Service(db=str(db), progress=False) as service:
        if text:
            service.load_models(image=False)  # the driver's model loads are not part of the indexing time
        service.load_models(text=False)
        cpu = cpu_seconds()
        report = service.index(folder, engine=engine, text_search=text)
        report.cpu = cpu_seconds() - cpu  # type: ignore[attr-defined]
        return report


def per_photo(report: IndexReport) -> str:
    count = report.added + report.failed
    return f"{report.seconds:6.1f} s  {count / report.seconds:6.1f} img/s  {1000 * report.cpu / count:5.1f} CPU-ms/img"  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 photos instead of 2,000")
    parser.add_argument("--no-text", action="store_true", help="pooled features only (no joint embeddings)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local cluster")
    args = parser.parse_args()
    text = not args.no_text
    photos = pick_photos(200 if args.quick else 2000)
    print(f"{len(photos)} photos from {FLICKR8K}; {os.cpu_count()} cores; text embeddings: {text}")
    with tempfile.TemporaryDirectory(prefix="vistext-ray-bench-") as tmp:
        root = Path(tmp)
        folders = {}
        for name, chosen in (("warm", photos[:32]), ("quarter", photos[: len(photos) // 4]), ("all", photos)):
            folder = folders[name] = root / name
            folder.mkdir()
            for photo in chosen:  # an original and its 224-px copy share a name
                shutil.copy(photo, folder / f"{photo.parent.name}-{photo.name}")

        # local before and after the Ray runs: other load on the machine shows as a gap between the two
        first = run(folders["all"], root / "local-1.sqlite", "local", text)
        print(f"local {first.added + first.failed:5d} photos: {per_photo(first)}  (before the Ray runs)")
        started = time.perf_counter()
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - started
        print(f"ray.init (local cluster, {args.cpus} CPUs):      {startup:6.1f} s  (start-up, reported apart)")
        job = run(folders["warm"], root / "warm.sqlite", "ray", text)
        print(f"one Ray job of 32 photos:                 {job.seconds:6.1f} s  (fixed cost per run, mostly)")
        runs = {}
        for name in ("quarter", "all"):
            with peak_rss() as rss:
                report = runs[name] = run(folders[name], root / f"ray-{name}.sqlite", "ray", text)
                before, peak = rss()
            count = report.added + report.failed
            print(
                f"ray   {count:5d} photos: {per_photo(report)}  "
                f"driver RSS {before:6.0f} MB before, peak {peak:6.0f} MB (+{peak - before:.0f})"
            )
        ray_rate = count / report.seconds
        quarter = runs["quarter"]
        steady = (count - quarter.added - quarter.failed) / (report.seconds - quarter.seconds)
        print(f"ray steady rate (all - quarter, no per-job cost): {steady:6.1f} img/s")
        ray.shutdown()

        local = run(folders["all"], root / "local-2.sqlite", "local", text)
        local_rate = 2 * (local.added + local.failed) / (local.seconds + first.seconds)
        print(f"local {local.added + local.failed:5d} photos: {per_photo(local)}  (after the Ray runs)")
        print(f"local mean rate:                          {local_rate:6.1f} img/s")
        print(f"ray / local throughput, cluster up:       {ray_rate / local_rate:6.2f}x  (target >= 0.8)")
        print(f"ray / local, steady (per-job cost left out): {steady / local_rate:6.2f}x")
        cpu_ratio = (first.cpu + local.cpu) / 2 / report.cpu  # type: ignore[attr-defined]
        print(f"local / ray CPU time per photo:           {cpu_ratio:6.2f}x  (the ratio on an idle machine)")


if __name__ == "__main__":
    main()
